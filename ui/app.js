// logs-distributor status page: polls the JSON API once a second and
// updates the page in place. No framework, no build step; every value from
// the API reaches the page through textContent, never as HTML.
'use strict';

(() => {
  const POLL_MS = 1000;
  const UNREACHABLE_RETRY_MS = 2000;
  const HIDDEN_POLL_MS = 10000;
  const REQUEST_TIMEOUT_MS = 5000;
  const DEAD_LETTER_PAGE = 10;
  const SPARK_SECONDS = 300;
  const SPARK_W = 300;
  const SPARK_H = 40;
  // Where a bearer token will live once the API has tokens.
  const TOKEN_KEY = 'ld-token';

  const $ = (id) => document.getElementById(id);
  const intFmt = new Intl.NumberFormat('en');

  // ------------------------------------------------------------ API access

  /** The network failed (no answer at all): the distributor is unreachable. */
  class Unreachable extends Error {}

  /** The distributor answered, but with an error. */
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function currentToken() {
    try {
      return localStorage.getItem(TOKEN_KEY) || null;
    } catch {
      return null;
    }
  }

  // Set when the API answers 401/403; buttons stay disabled until the
  // token changes.
  let denied = null; // {status, token}

  function isDenied() {
    return denied !== null && denied.token === currentToken();
  }

  /**
   * The one place that talks to the API. Resolves to {status, data} for any
   * answer (a 503 from /api/v1/health or /readyz still carries JSON);
   * throws Unreachable when nothing answered and HttpError on 401/403.
   */
  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Accept: 'application/json' };
    const token = currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let text;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'same-origin',
        signal: controller.signal,
      });
      text = await response.text();
    } catch (error) {
      throw new Unreachable(controller.signal.aborted ? 'no answer within 5 s' : String(error.message || error));
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.status === 401 || response.status === 403) {
      denied = { status: response.status, token };
      throw new HttpError(response.status, errorText(response.status, data));
    }
    return { status: response.status, data };
  }

  function errorText(status, data) {
    const reason = data && typeof data.error === 'string' ? data.error : 'no reason given';
    return `HTTP ${status}: ${reason}`;
  }

  /** GET that must answer 2xx JSON (or one of `allowed`). */
  async function getJson(path, allowed = []) {
    const { status, data } = await api(path);
    if ((status >= 200 && status < 300) || allowed.includes(status)) {
      if (data === null || typeof data !== 'object') {
        throw new HttpError(status, `HTTP ${status}: the answer is not JSON`);
      }
      return data;
    }
    throw new HttpError(status, errorText(status, data));
  }

  // ------------------------------------------------------------ formatting

  function fmtInt(n) {
    return typeof n === 'number' && Number.isFinite(n) ? intFmt.format(n) : '–';
  }

  function fmtRate(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
    return n < 10 ? n.toFixed(1) : intFmt.format(Math.round(n));
  }

  function fmtPercent(n) {
    return typeof n === 'number' && Number.isFinite(n) ? `${n.toFixed(1)}%` : '–';
  }

  // Server clock minus ours, so relative times do not depend on the
  // browser's clock being right.
  let skewMs = 0;

  function serverNow() {
    return Date.now() + skewMs;
  }

  function relative(iso) {
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return 'unknown';
    const seconds = Math.max(0, Math.round((serverNow() - then) / 1000));
    if (seconds < 5) return 'just now';
    if (seconds < 60) return `${seconds} s ago`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min ago`;
    return `${Math.floor(hours / 24)} days ago`;
  }

  function setTime(el, iso) {
    el.dateTime = iso;
    el.title = new Date(iso).toLocaleString();
    el.textContent = relative(iso);
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function setWidth(el, percent) {
    const clamped = Math.max(0, Math.min(100, Number(percent) || 0));
    el.style.width = `${clamped}%`;
  }

  function make(tag, props = {}, children = []) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'role') el.setAttribute(key, value);
      else el[key] = value;
    }
    for (const child of children) el.append(child);
    return el;
  }

  const REASONS = {
    Starting: 'not probed yet',
    ProbeSucceeded: 'probe passed',
    ProbeFailed: 'probe failed',
    Ejected: 'ejected after failed deliveries',
    ForcedHealthy: 'forced in by an operator',
    ForcedUnhealthy: 'forced out by an operator',
    Passive: 'passive: not probed, failed deliveries eject',
    CooledDown: 'back after its cool-down, on probation',
    DeliverySucceeded: 'back: a delivery succeeded',
  };

  const MODES = {
    auto: 'auto (probes decide)',
    force_healthy: 'forced healthy',
    force_unhealthy: 'forced unhealthy',
  };

  // ------------------------------------------------------------ actions

  // Keys of the requests running now: their buttons stay disabled.
  const pending = new Set();
  let lastSnapshot = null;

  function showActionError(text) {
    setText($('action-error-text'), text);
    $('action-error').hidden = false;
  }

  function clearActionError() {
    $('action-error').hidden = true;
  }

  async function act(key, path, body, describe) {
    if (pending.has(key) || isDenied()) return;
    pending.add(key);
    render();
    try {
      const { status, data } = await api(path, { method: 'POST', body });
      if (status >= 400) {
        showActionError(`${describe} failed: ${errorText(status, data)}`);
      } else {
        clearActionError();
      }
    } catch (error) {
      if (error instanceof Unreachable) {
        showActionError(`${describe} failed: cannot reach the distributor (${error.message}).`);
      } else {
        showActionError(`${describe} failed: ${error.message}`);
      }
    } finally {
      pending.delete(key);
      render();
      pollNow();
    }
  }

  function toggleHealth(id, name, mode) {
    const forcedOut = mode === 'force_unhealthy' || mode === 'force_healthy';
    const body = forcedOut ? { mode: 'auto' } : { healthy: false };
    const what = forcedOut ? `Handing ${name} back to the probes` : `Forcing ${name} out of rotation`;
    act(`health:${id}`, `/api/v1/analyzers/${encodeURIComponent(id)}/health`, body, what);
  }

  function replay(ids) {
    const key = ids ? `replay:${ids[0]}` : 'replay:all';
    const what = ids ? `Replaying ${ids[0]}` : 'Replaying every dead letter';
    act(key, '/api/v1/dead-letter/replay', ids ? { ids } : {}, what);
  }

  // ------------------------------------------------------------ rendering

  const analyzerRows = new Map(); // id -> {tr, parts}
  const deadRows = new Map(); // key -> li

  function analyzerRow(id) {
    let row = analyzerRows.get(id);
    if (row) return row;
    const parts = {
      name: make('div', { class: 'a-name' }),
      id: make('code', { text: id }),
      endpoint: make('span', { 'data-testid': 'endpoint' }),
      weight: make('span', { 'data-testid': 'weight' }),
      targetBar: make('span'),
      actualBar: make('span'),
      target: make('span', { class: 'share-value', 'data-testid': 'target-share' }),
      actual: make('span', { class: 'share-value', 'data-testid': 'actual-share' }),
      badge: make('span', { class: 'badge' }),
      reason: make('span', { class: 'health-reason' }),
      sinceLabel: make('span'),
      since: make('time'),
      mode: make('span'),
      processed: make('td', { class: 'num', 'data-label': 'Processed', 'data-testid': 'processed' }),
      errors: make('td', { class: 'num', 'data-label': 'Errors', 'data-testid': 'errors' }),
      queued: make('td', { class: 'num', 'data-label': 'Queued', 'data-testid': 'queued' }),
      button: make('button', { type: 'button', class: 'button', 'data-testid': 'toggle-health' }),
    };
    parts.health = make('td', { class: 'a-health', 'data-testid': 'health' }, [
      make('div', { class: 'health-line' }, [parts.badge, parts.reason]),
      make('div', { class: 'health-since' }, [parts.sinceLabel, ' ', parts.since]),
      make('div', { class: 'health-mode', 'data-testid': 'health-mode' }, ['mode: ', parts.mode]),
    ]);
    parts.button.addEventListener('click', () => {
      const current = lastSnapshot && lastSnapshot.analyzers.get(id);
      if (current) toggleHealth(id, current.name, current.mode);
    });
    const share = make('div', { class: 'share' }, [
      make('span', { class: 'share-label', text: 'target' }),
      make('span', { class: 'bar bar-target', 'aria-hidden': 'true' }, [parts.targetBar]),
      parts.target,
      make('span', { class: 'share-label', text: 'actual' }),
      make('span', { class: 'bar', 'aria-hidden': 'true' }, [parts.actualBar]),
      parts.actual,
    ]);
    const tr = make('tr', { 'data-testid': 'analyzer-row', 'data-analyzer-id': id }, [
      make('th', { scope: 'row', class: 'a-cell' }, [
        parts.name,
        make('div', { class: 'a-sub' }, [parts.id]),
        make('div', { class: 'a-sub' }, [parts.endpoint, ' · ', parts.weight]),
      ]),
      make('td', { class: 'a-share' }, [share]),
      parts.health,
      parts.processed,
      parts.errors,
      parts.queued,
      make('td', { class: 'a-action' }, [parts.button]),
    ]);
    row = { tr, parts };
    analyzerRows.set(id, row);
    return row;
  }

  function renderAnalyzers(snapshot) {
    const tbody = $('analyzer-rows');
    const ids = [...snapshot.analyzers.keys()];
    for (const [id, row] of analyzerRows) {
      if (!snapshot.analyzers.has(id)) {
        row.tr.remove();
        analyzerRows.delete(id);
      }
    }
    const weightSum = [...snapshot.analyzers.values()].reduce((sum, a) => sum + (a.weight > 0 ? a.weight : 0), 0);
    ids.forEach((id, index) => {
      const a = snapshot.analyzers.get(id);
      const { tr, parts } = analyzerRow(id);
      if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] || null);
      const target = a.weight > 0 && weightSum > 0 ? (a.weight * 100) / weightSum : 0;
      tr.dataset.healthy = String(a.healthy);
      tr.dataset.inRotation = String(a.inRotation);
      tr.dataset.mode = a.mode;
      setText(parts.name, a.name);
      setText(parts.endpoint, a.endpoint || 'simulated');
      setText(parts.weight, a.weight > 0 ? `weight ${a.weight}` : 'weight 0 (off)');
      setText(parts.target, fmtPercent(target));
      setText(parts.actual, fmtPercent(a.recentShare));
      parts.target.dataset.value = target.toFixed(2);
      parts.actual.dataset.value = String(a.recentShare);
      parts.actual.title = `all time: ${fmtPercent(a.lifetimeShare)} of routing decisions (${fmtInt(a.routed)} routed)`;
      setWidth(parts.targetBar, target);
      setWidth(parts.actualBar, a.recentShare);

      let badge = ['badge badge-ok', 'Healthy'];
      if (!a.healthy) badge = ['badge badge-bad', 'Unhealthy'];
      else if (!a.inRotation) badge = ['badge badge-warn', a.weight > 0 ? 'Out of rotation' : 'Weight 0'];
      parts.badge.className = badge[0];
      setText(parts.badge, badge[1]);
      parts.health.dataset.reason = a.reason || '';
      parts.health.dataset.healthy = String(a.healthy);
      const why = REASONS[a.reason] || a.reason || '';
      setText(parts.reason, a.detail ? `${why}: ${a.detail}` : why);
      parts.reason.title = a.reason || '';
      setText(parts.sinceLabel, a.healthy ? 'healthy since' : 'unhealthy since');
      if (a.since) setTime(parts.since, a.since);
      setText(parts.mode, MODES[a.mode] || a.mode || 'unknown');

      setText(parts.processed, fmtInt(a.processed));
      setText(parts.errors, fmtInt(a.errors));
      setText(parts.queued, fmtInt(a.queued));

      const key = `health:${id}`;
      const busy = pending.has(key);
      const forced = a.mode === 'force_unhealthy' || a.mode === 'force_healthy';
      let label;
      if (busy) label = forced ? 'Handing back…' : 'Forcing out…';
      else label = forced ? 'Back to auto' : 'Force out';
      setText(parts.button, label);
      parts.button.setAttribute('aria-label', `${label}: ${a.name}`);
      parts.button.title = forced
        ? 'Hand this analyzer back to the health probes ({"mode": "auto"})'
        : 'Take this analyzer out of rotation until handed back ({"healthy": false})';
      parts.button.disabled = busy || isDenied();
      parts.button.setAttribute('aria-busy', String(busy));
    });
    $('analyzers-empty').hidden = ids.length > 0;
    setText(
      $('analyzers-count'),
      ids.length ? `${snapshot.activeCount} of ${ids.length} in rotation` : '',
    );
  }

  function deadKey(entry) {
    return `${entry.packet.id}\u0000${entry.failed_at}`;
  }

  function deadRow(entry) {
    const key = deadKey(entry);
    let li = deadRows.get(key);
    if (li) return li;
    const id = entry.packet.id;
    const messages = Array.isArray(entry.packet.messages) ? entry.packet.messages.length : 0;
    const button = make('button', {
      type: 'button',
      class: 'button',
      'data-testid': 'replay-one',
      text: 'Replay',
      'aria-label': `Replay packet ${id}`,
    });
    button.addEventListener('click', () => replay([id]));
    li = make('li', { 'data-testid': 'dead-letter-row', 'data-packet-id': id }, [
      make('div', { class: 'dl-id', text: id }),
      button,
      make('div', { class: 'dl-error', 'data-testid': 'final-error', text: entry.final_error }),
      make('div', { class: 'dl-meta' }, [
        `${messages} message${messages === 1 ? '' : 's'} · ${entry.packet.retry_count ?? 0} retries · failed `,
        make('time', { 'data-failed-at': entry.failed_at }),
      ]),
    ]);
    li.button = button;
    deadRows.set(key, li);
    return li;
  }

  function renderDeadLetters(page) {
    const list = $('dead-letter-rows');
    const newestFirst = [...page.packets].reverse();
    const keys = new Set(newestFirst.map(deadKey));
    for (const [key, li] of deadRows) {
      if (!keys.has(key)) {
        li.remove();
        deadRows.delete(key);
      }
    }
    newestFirst.forEach((entry, index) => {
      const li = deadRow(entry);
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
      setTime(li.querySelector('time'), entry.failed_at);
      const busy = pending.has(`replay:${entry.packet.id}`) || pending.has('replay:all');
      li.button.disabled = busy || isDenied();
      setText(li.button, busy ? 'Replaying…' : 'Replay');
    });
    const total = page.total;
    setText($('dead-letter-count'), total > 0 ? `newest ${newestFirst.length} of ${fmtInt(total)}` : '');
    $('dead-letter-empty').hidden = total > 0;
    const all = $('replay-all');
    const busy = pending.has('replay:all');
    all.disabled = total === 0 || busy || isDenied();
    setText(all, busy ? 'Replaying…' : `Replay all (${fmtInt(total)})`);
    all.setAttribute('aria-label', busy ? 'Replaying all dead letters' : `Replay all ${total} dead letters`);
  }

  /** Draws the rate history; returns the text that describes it. */
  function sparkline(svg, points, field, label) {
    const values = points
      .map((p) => ({ x: Number(p.seconds_ago) || 0, y: Number(p[field]) || 0 }))
      .filter((v) => v.x <= SPARK_SECONDS);
    const peak = values.reduce((max, v) => Math.max(max, v.y), 0);
    const top = peak > 0 ? peak : 1;
    // A young process draws its first minute across the whole width.
    const oldest = values.length ? values[0].x : 0;
    const span = Math.min(SPARK_SECONDS, Math.max(60, oldest));
    const coords = values
      .filter((v) => v.x <= span)
      .map((v) => [
        (SPARK_W * (1 - v.x / span)).toFixed(1),
        (SPARK_H - 2 - ((SPARK_H - 4) * v.y) / top).toFixed(1),
      ]);
    const [area, line] = svg.querySelectorAll('path');
    if (coords.length < 2) {
      line.setAttribute('d', '');
      area.setAttribute('d', '');
    } else {
      const d = coords.map(([x, y], i) => `${i ? 'L' : 'M'}${x} ${y}`).join(' ');
      line.setAttribute('d', d);
      area.setAttribute('d', `${d} L${coords[coords.length - 1][0]} ${SPARK_H} L${coords[0][0]} ${SPARK_H} Z`);
    }
    const now = values.length ? values[values.length - 1].y : 0;
    const minutes = Math.round(span / 60);
    const window = `last ${minutes} min`;
    svg.setAttribute('aria-label', `${label} over the ${window}: now ${fmtRate(now)}, peak ${fmtRate(peak)}`);
    return `peak ${fmtRate(peak)}/s, ${window}`;
  }

  function renderTotals(stats, traffic) {
    const history = Array.isArray(traffic.history) ? traffic.history : [];
    const newest = history[history.length - 1];
    setText($('packets-per-sec'), fmtRate(newest ? newest.packets_per_sec : 0));
    setText($('messages-per-sec'), fmtRate(newest ? newest.messages_per_sec : 0));
    setText($('pps-note'), sparkline($('pps-spark'), history, 'packets_per_sec', 'packets per second'));
    setText($('mps-note'), sparkline($('mps-spark'), history, 'messages_per_sec', 'messages per second'));

    setText($('in-flight'), fmtInt(stats.in_flight));
    setText(
      $('waiting-note'),
      stats.waiting_for_analyzer > 0
        ? `${fmtInt(stats.waiting_for_analyzer)} waiting for an analyzer`
        : 'accepted, not yet done',
    );
    setText($('retries'), fmtInt(stats.total_retries));
    setText($('dead-letters'), fmtInt(stats.total_dead_lettered));
    const inFile = lastSnapshot && lastSnapshot.deadLetters ? lastSnapshot.deadLetters.total : null;
    setText(
      $('dead-letter-note'),
      inFile === null ? 'written since start' : `written since start · ${fmtInt(inFile)} in the file`,
    );
    setText($('queue-capacity'), `of ${fmtInt(stats.queue_capacity)} packets`);
    for (const [name, value] of [
      ['queued', stats.packet_channel_util_percent],
      ['delivering', stats.result_channel_util_percent],
      ['retry', stats.retry_channel_util_percent],
    ]) {
      setText($(`q-${name}`), fmtPercent(value));
      setWidth($(`q-${name}-bar`), value);
    }
    setText($('uptime'), String(stats.uptime || '–').replace(/\.\d+s$/, 's'));
  }

  function renderHealth(health) {
    const pill = $('health-summary');
    pill.dataset.status = health.status;
    setText(
      pill.querySelector('.pill-text'),
      `${health.status} · ${health.active_analyzers}/${health.total_analyzers} in rotation`,
    );
  }

  function renderStorage(ready) {
    const pill = $('storage-state');
    let status = 'ready';
    let text = 'storage: ready';
    if (!ready.recovered) {
      status = 'starting';
      text = 'storage: recovering';
    } else if (!ready.accepting) {
      status = 'not-ready';
      text = 'storage: not accepting packets';
    } else if (ready.storage && ready.storage !== 'ok') {
      status = 'not-ready';
      text = 'storage: unavailable (disk full or I/O error)';
    }
    pill.dataset.status = status;
    pill.title = `/readyz: ${ready.status} (recovered: ${ready.recovered}, accepting: ${ready.accepting}, storage: ${ready.storage || 'ok'})`;
    setText(pill.querySelector('.pill-text'), text);
  }

  function renderBanners(snapshot) {
    const noHealthy = snapshot.analyzers.size > 0 && snapshot.activeCount === 0;
    $('no-healthy-banner').hidden = !noHealthy;
    if (noHealthy) {
      const waiting = snapshot.stats.waiting_for_analyzer || 0;
      setText(
        $('no-healthy-detail'),
        `${fmtInt(waiting)} packet${waiting === 1 ? '' : 's'} waiting; nothing is dropped. They go out as soon as an analyzer is back in rotation.`,
      );
    }
  }

  function renderAuth() {
    const banner = $('auth-banner');
    banner.hidden = !isDenied();
    if (isDenied()) {
      setText(
        $('auth-detail'),
        `The distributor answered ${denied.status}. Actions are disabled. Store a token with localStorage.setItem('${TOKEN_KEY}', '…') and reload.`,
      );
    }
  }

  let lastUpdate = null;
  let unreachable = null; // {title, reason} while the distributor cannot be reached

  function renderConnection() {
    const banner = $('unreachable-banner');
    banner.hidden = unreachable === null;
    if (unreachable !== null) {
      const since = lastUpdate ? ` Showing data from ${lastUpdate.toLocaleTimeString()}.` : '';
      setText($('unreachable-title'), unreachable.title);
      setText($('unreachable-detail'), `${unreachable.reason}. Retrying…${since}`);
      const pill = $('health-summary');
      pill.dataset.status = 'unreachable';
      setText(pill.querySelector('.pill-text'), 'unreachable');
    }
    setText(
      $('last-update'),
      lastUpdate ? `updated ${lastUpdate.toLocaleTimeString()}` : 'not updated yet',
    );
  }

  function render() {
    renderAuth();
    if (lastSnapshot) {
      renderTotals(lastSnapshot.stats, lastSnapshot.traffic);
      renderAnalyzers(lastSnapshot);
      renderBanners(lastSnapshot);
      renderHealth(lastSnapshot.health);
      renderStorage(lastSnapshot.ready);
      if (lastSnapshot.deadLetters) renderDeadLetters(lastSnapshot.deadLetters);
    }
    // Last: while unreachable it overrides the (stale) health summary.
    renderConnection();
  }

  // ------------------------------------------------------------ polling

  function merge(stats, list) {
    const analyzers = new Map();
    const ids = new Set([...Object.keys(stats.analyzers || {}), ...Object.keys(list.analyzers || {})]);
    for (const id of [...ids].sort()) {
      const s = (stats.analyzers || {})[id] || {};
      const l = (list.analyzers || {})[id] || {};
      analyzers.set(id, {
        name: l.name || s.name || id,
        weight: Number(s.weight ?? l.weight ?? 0),
        healthy: Boolean(l.is_healthy ?? s.is_healthy),
        inRotation: Boolean(l.in_rotation ?? s.is_healthy),
        mode: l.health_mode || 'auto',
        reason: l.health_reason || '',
        detail: l.health_detail || '',
        since: l.healthy_since || null,
        endpoint: l.endpoint || '',
        processed: s.processed_count ?? l.processed_count,
        errors: s.error_count ?? l.error_count,
        queued: s.queued,
        routed: s.routed_count,
        recentShare: Number(s.recent_share_percent) || 0,
        lifetimeShare: Number(s.share_percent) || 0,
      });
    }
    return analyzers;
  }

  async function refresh() {
    const results = await Promise.allSettled([
      getJson('/api/v1/stats'),
      getJson('/api/v1/analyzers'),
      getJson('/api/v1/traffic'),
      getJson('/api/v1/health', [503]),
      getJson('/readyz', [503]),
      getJson(`/api/v1/dead-letter?limit=${DEAD_LETTER_PAGE}`),
    ]);
    const failures = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    const network = failures.find((e) => e instanceof Unreachable);
    const answered = failures.filter((e) => !(e instanceof Unreachable));
    const [stats, list, traffic, health, ready, dead] = results.map((r) => (r.status === 'fulfilled' ? r.value : null));
    if (network) {
      unreachable = { title: 'Cannot reach the distributor.', reason: network.message };
    } else if (!stats || !list || !traffic || !health || !ready) {
      const first = answered[0];
      const auth = first && (first.status === 401 || first.status === 403);
      unreachable = auth ? null : { title: 'The distributor answered with an error.', reason: first ? first.message : 'unknown' };
    } else {
      unreachable = null;
      const serverTime = Date.parse(list.timestamp);
      if (!Number.isNaN(serverTime)) skewMs = serverTime - Date.now();
      lastUpdate = new Date();
      const analyzers = merge(stats, list);
      lastSnapshot = {
        stats,
        traffic,
        health,
        ready,
        analyzers,
        activeCount: [...analyzers.values()].filter((a) => a.inRotation).length,
        deadLetters: dead || (lastSnapshot && lastSnapshot.deadLetters) || null,
      };
      const deadError = $('dead-letter-error');
      const deadFailure = results[5].status === 'rejected' ? results[5].reason : null;
      deadError.hidden = !deadFailure;
      if (deadFailure) setText(deadError, `Cannot read the dead letter: ${deadFailure.message}`);
    }
    document.body.dataset.state = unreachable !== null ? 'unreachable' : lastSnapshot ? 'live' : 'loading';
    render();
  }

  let timer = null;
  let running = false;
  let again = false;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(tick, ms);
  }

  function pollNow() {
    schedule(0);
  }

  async function tick() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await refresh();
    } catch (error) {
      unreachable = { title: 'Cannot reach the distributor.', reason: error.message };
      render();
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      schedule(0);
    } else if (document.hidden) {
      schedule(HIDDEN_POLL_MS);
    } else {
      schedule(unreachable !== null ? UNREACHABLE_RETRY_MS : POLL_MS);
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) pollNow();
  });
  window.addEventListener('storage', (event) => {
    if (event.key === TOKEN_KEY) pollNow();
  });
  $('replay-all').addEventListener('click', () => replay(null));
  $('action-error-close').addEventListener('click', clearActionError);
  pollNow();
})();
