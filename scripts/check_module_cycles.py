#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a loop.

A module (one file) depends on another when it names it through a path:
`use crate::a::b`, `use super::x`, `self::y`, or the same paths inside code.
A parent's `mod child;` is not a dependency (it only declares the child), so a
`mod.rs` that declares its parts and re-exports them stays below them; a
child that then imports an item of that `mod.rs` closes a loop, and is
reported like any other.

    python3 scripts/check_module_cycles.py            # every crate root of the workspace
    python3 scripts/check_module_cycles.py path/to/lib.rs ...

Prints each loop as its files and the names that tie them; exits 1 if any.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATE_ROOTS = [
    "envelope-core/src/lib.rs",
    "kms-adapter/src/lib.rs",
    "rotate-cli/src/lib.rs",
    "rotate-cli/src/main.rs",
    "benches/src/lib.rs",
]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", re.M)
USE_STMT = re.compile(r"\buse\s+([^;]+);", re.S)
CODE_PATH = re.compile(r"\b(crate|super|self)((?:::" + IDENT + r")+)")


def strip_comments_and_strings(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (aliases and globs trimmed)."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{" and depth == 0:
            prefix = tree[:i].rstrip(":").strip()
            inner = tree[i + 1 : tree.rindex("}")]
            parts, level, start = [], 0, 0
            for j, c in enumerate(inner):
                if c == "{":
                    level += 1
                elif c == "}":
                    level -= 1
                elif c == "," and level == 0:
                    parts.append(inner[start:j])
                    start = j + 1
            parts.append(inner[start:])
            out = []
            for part in filter(str.strip, parts):
                for sub in expand_use_tree(part):
                    out.append(f"{prefix}::{sub}" if prefix else sub)
            return out
    tree = re.sub(r"\s+as\s+" + IDENT + r"$", "", tree)
    return [tree.removesuffix("::*")]


def module_files(root_file):
    """Every file of the crate rooted at `root_file`, with its module path."""
    modules = {}

    def walk(path, module, directory):
        modules[tuple(module)] = path
        text = strip_comments_and_strings(path.read_text())
        for name in MOD_DECL.findall(text):
            for candidate in (directory / f"{name}.rs", directory / name / "mod.rs"):
                if candidate.exists():
                    walk(candidate, module + [name], candidate.parent if candidate.name == "mod.rs" else directory / name)
                    break

    walk(root_file, [], root_file.parent)
    return modules


def inline_depths(text):
    """For each offset of `text`, how many inline `mod name { ... }` blocks enclose it."""
    depths, stack, depth = [0] * (len(text) + 1), [], 0
    opening = {m.end() - 1 for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", text)}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i in opening)
            depth += i in opening
        elif ch == "}" and stack:
            depth -= stack.pop()
        depths[i] = depth
    return depths


def resolve(path, module, inline=0):
    """Absolute module segments of a path used inside `module`, `inline` inline modules deep."""
    segments = [s for s in path.split("::") if s]
    if not segments:
        return None
    if segments[0] == "crate":
        base, rest = [], segments[1:]
    elif segments[0] in ("super", "self"):
        base = list(module)
        while segments and segments[0] in ("super", "self"):
            if segments.pop(0) == "super":
                if inline:
                    inline -= 1  # out of an inline module, still in this file
                    continue
                if not base:
                    return None
                base.pop()
        rest = segments
    else:
        return None  # another crate, or a name in scope
    return base + rest


def reexports(text):
    """`pub use self::child::{A, B}` in a file: name -> child module name."""
    out = {}
    for stmt in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text, re.S):
        for use in expand_use_tree(stmt):
            parts = use.split("::")
            if parts[0] == "self":
                parts = parts[1:]
            if len(parts) >= 2:
                out[parts[-1]] = parts[0]
    return out


def edges(modules):
    by_path = {v: k for k, v in modules.items()}
    texts = {path: strip_comments_and_strings(path.read_text()) for path in by_path}
    faces = {path: reexports(text) for path, text in texts.items()}
    graph = {path: {} for path in modules.values()}
    for path, module in by_path.items():
        text = texts[path]
        depths = inline_depths(text)
        used = []
        for m in USE_STMT.finditer(text):
            used += [(u, depths[m.start()]) for u in expand_use_tree(m.group(1))]
        used += [(m.group(1) + m.group(2), depths[m.start()]) for m in CODE_PATH.finditer(text)]
        # A child module named without `self::` (`use file::X`, `commands::run()`).
        children = sorted(k[-1] for k in modules if len(k) == len(module) + 1 and k[:-1] == module)
        if children:
            bare = re.compile(r"(?<![\w:])(" + "|".join(children) + r")((?:::" + IDENT + r")+)")
            used += [("self::" + m.group(1) + m.group(2), depths[m.start()]) for m in bare.finditer(text)]
            used = [("self::" + u, d) if u.split("::")[0] in children else (u, d) for u, d in used]
        for use, inline in used:
            target = resolve(use, module, inline)
            if target is None:
                continue
            # The longest prefix that is a module file; the rest names an item in it.
            for n in range(len(target), -1, -1):
                hit = modules.get(tuple(target[:n]))
                if hit is None:
                    continue
                name = target[n] if n < len(target) else (target[-1] if target else "crate")
                # An item a parent only re-exports lives in the child that defines it.
                while name in faces.get(hit, {}) and tuple(target[:n]) + (faces[hit][name],) in modules:
                    hit = modules[tuple(target[:n]) + (faces[hit][name],)]
                if hit != path:
                    graph[path].setdefault(hit, set()).add(name)
                break
    return graph


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main(argv):
    roots = [Path(a) for a in argv] or [ROOT / r for r in CRATE_ROOTS if (ROOT / r).exists()]
    found = 0
    for root in roots:
        graph = edges(module_files(root))
        for component in cycles(graph):
            found += 1
            rel = lambda p: p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
            print(f"module cycle in {rel(root)}: " + ", ".join(str(rel(p)) for p in component))
            members = set(component)
            for a in component:
                for b, names in sorted(graph[a].items()):
                    if b in members:
                        print(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(names))}")
    if found:
        print(f"{found} module cycle(s): move what both sides need below both, or merge them.")
        return 1
    print(f"no module cycles in {len(roots)} crate roots")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
