//! The service started inside the test process, on a port of its own,
//! with a data directory of its own.

use crate::support::config::Config;
use crate::support::http::Api;
use crate::support::poll::DEADLINE;
use logs_distributor::config::Settings;
use logs_distributor::service::{self, Running};
use std::path::Path;
use tempfile::TempDir;

/// A distributor started in this process on 127.0.0.1:0.
pub(crate) struct Server {
    running: Option<Running>,
    pub api: Api,
    pub dir: TempDir,
}

impl Server {
    pub(crate) async fn start(config: &Config) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::from_yaml(&config.yaml())
            .unwrap_or_else(|e| panic!("test configuration refused: {e}\n{}", config.yaml()));
        settings.listen = "127.0.0.1:0".into();
        settings.data_dir = dir.path().to_path_buf();
        let running = service::start(settings).await.expect("distributor starts");
        let api = Api::new(running.addr());
        Server {
            running: Some(running),
            api,
            dir,
        }
    }

    pub(crate) fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn running(&self) -> &Running {
        self.running.as_ref().expect("not shut down yet")
    }

    /// The orderly shutdown; fails the test if it fails.
    pub(crate) async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            tokio::time::timeout(DEADLINE, running.shutdown())
                .await
                .expect("shutdown finishes in time")
                .expect("shutdown succeeds");
        }
    }
}

impl std::ops::Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}
