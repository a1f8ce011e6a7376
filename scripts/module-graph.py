#!/usr/bin/env python3
"""The module graph of a crate's `src/`: every `crate::` (and `super::`)
path that one module uses of another, and the import cycles among them.

    scripts/module-graph.py [SRC]            edges and cycles; exit 1 on a cycle
    scripts/module-graph.py [SRC] --dot      the graph in Graphviz dot

A module is a file (`a/mod.rs` is module `a`). A path names the longest
module it reaches (`crate::storage::wal::Wal` is `storage::wal`). A parent
naming its own child (`mod x; use x::Y`) is the tree, not an import, and
is left out; everything else counts, `super::` included. Comments and
string literals are ignored; `#[cfg(test)] mod tests` blocks are not (a
test that imports across modules is an import too).
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::\w+)*)::\{([^;]*)\};", re.S)


def module_of(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return "::".join(parts) or "crate"


def strip_comments_and_strings(text: str) -> str:
    """The code with comments, string and char literals blanked."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and re.match(r'r#*"', text[i:]):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            i += re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_paths(prefix: str, body: str):
    """`a::{b, c::{d, e}}` as the paths a::b, a::c::d, a::c::e (enough
    depth for module names)."""
    depth, start, items = 0, 0, []
    for i, ch in enumerate(body + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
    for item in filter(None, items):
        if "::{" in item:
            head, rest = item.split("::{", 1)
            yield from group_paths(f"{prefix}::{head}", rest.rsplit("}", 1)[0])
        else:
            yield f"{prefix}::{item.split(' as ')[0].strip()}"


def edges(src: Path):
    modules = {module_of(p, src): p for p in src.rglob("*.rs")}
    found = {}
    for module, path in modules.items():
        text = strip_comments_and_strings(path.read_text())
        paths = [(root, rest) for root, rest in PATH.findall(text)]
        for root, prefix, body in USE_GROUP.findall(text):
            paths += [(root, p) for p in group_paths(prefix, body)]
        here = module.split("::") if module != "crate" else []
        for root, rest in paths:
            names = [n for n in rest.split("::") if n]
            if root == "crate":
                base = []
            else:
                # `super` of a file module is its parent folder's module; of
                # a mod.rs, the folder above.
                base = here[:-1]
                while names and names[0] == "super":
                    base, names = base[:-1], names[1:]
            full = base + names
            target = None
            for n in range(len(full), 0, -1):
                candidate = "::".join(full[:n])
                if candidate in modules:
                    target = candidate
                    break
            if target is None or target == module or target == "crate":
                continue
            # A parent using its own descendant is the module tree.
            if target.startswith(module + "::") if module != "crate" else True:
                continue
            found.setdefault((module, target), set()).add(rest)
    return sorted(modules), found


def cycles(nodes, edge_set):
    """Strongly connected components with more than one module (Tarjan)."""
    graph = {n: sorted({b for (a, b) in edge_set if a == n}) for n in nodes}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for n in nodes:
        if n not in index:
            visit(n)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = Path(args[0] if args else "src")
    nodes, found = edges(src)
    if "--dot" in sys.argv:
        print("digraph modules {")
        for a, b in sorted(found):
            print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for (a, b) in sorted(found):
        print(f"{a} -> {b}")
    loops = cycles(nodes, found)
    print(f"{len(nodes)} modules, {len(found)} edges, {len(loops)} cycles")
    for loop in loops:
        print(f"cycle of {len(loop)} modules: {', '.join(loop)}")
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main())
