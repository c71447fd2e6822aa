#!/usr/bin/env python3
"""code-metrics.py [SRC]: the numbers issue 21 asks for, from the Rust source (default src/).

- non-test lines per module (a file's lines before its `#[cfg(test)]` module, and none of a
  `*_tests.rs` file), blank lines and comments included;
- the longest functions (lines from `fn` to its closing brace, test code excluded);
- cycles in the module import graph: module A depends on B when A's non-test code names
  `crate::B` (in a `use` or a path), submodules folded into their top module.
Approximate by design (a scanner, not a parser): for trends, not for proofs."""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, src)[:-3].replace(os.sep, "::")
            rel = rel[:-len("::mod")] if rel.endswith("::mod") else rel
            mods[rel] = open(p, encoding="utf-8").read().split("\n")

def non_test(name, lines):
    if name.endswith("_tests") or name.split("::")[-1] in ("tests", "testutil", "fake") or name.startswith("fuzzing"):
        return []
    for i, l in enumerate(lines[:-1]):
        if l.startswith("#[cfg(test)]"):
            # the test module: `mod`, after attributes and comments only
            rest = [n for n in lines[i + 1 : i + 12] if not n.startswith(("#[", "//"))]
            if rest and re.match(r"(pub(\(crate\))? )?mod \w+ \{", rest[0]):
                return lines[:i]
    return lines

code = {m: non_test(m, l) for m, l in mods.items()}
print("non-test lines per module:")
for m, l in sorted(code.items(), key=lambda x: -len(x[1])):
    if l:
        print(f"  {len(l):5}  {m}")
print(f"  {sum(len(l) for l in code.values()):5}  total")

fns = []
for m, lines in code.items():
    i = 0
    while i < len(lines):
        mt = re.match(r"\s*(pub(\([a-z]+\))? )?(const )?(unsafe )?fn (\w+)", lines[i])
        if mt and not lines[i].rstrip().endswith(";"):
            depth, j, opened = 0, i, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if opened and depth <= 0:
                    break
                j += 1
            fns.append((j - i + 1, f"{m}::{mt.group(5)}"))
        i += 1
print("longest functions:")
for n, f in sorted(fns, reverse=True)[:12]:
    print(f"  {n:5}  {f}")

# names lib.rs re-exports at the crate root, and the module they come from
REEXPORTS = {}
for l in mods.get("lib", []):
    mt = re.match(r"(?:pub(?:\(crate\))? )?use (?:crate::|self::)?(\w+)::\{?([\w, ]+)\}?;", l)
    if mt:
        for n in mt.group(2).split(","):
            REEXPORTS[n.strip()] = mt.group(1)

def resolve(path):
    """The module file a `crate::` path lands in: its longest prefix that is one."""
    parts = path.split("::")
    if parts and parts[0] in REEXPORTS:
        return REEXPORTS[parts[0]]
    for k in range(len(parts), 0, -1):
        if "::".join(parts[:k]) in mods:
            return "::".join(parts[:k])
    return None

graph = {}
for m, lines in code.items():
    deps = set()
    text = "\n".join(l for l in lines if not l.lstrip().startswith("//"))
    paths = re.findall(r"crate::((?:\w+::)*\w+)", text)
    # use crate::a::{b::C, d}: each path of the group, prefixed
    for prefix, group in re.findall(r"crate::((?:\w+::)*)\{([^}]*)\}", text):
        paths += [prefix + p.strip() for p in group.split(",") if p.strip() and p.strip() != "self"]
        paths.append(prefix.rstrip(":"))
    if "::" in m:
        parent = m.rsplit("::", 1)[0]
        paths += [parent + "::" + p for p in re.findall(r"\bsuper::((?:\w+::)*\w+)", text)]
    paths += [m + "::" + p for p in re.findall(r"\bself::((?:\w+::)*\w+)", text)]
    for p in paths:
        d = resolve(p)
        if d and d != m and not d.endswith("_tests") and d not in ("fake", "testutil"):
            deps.add(d)
    graph[m] = deps
# cycles: strongly connected components with more than one module
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in graph:
            continue
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v:
                break
        if len(c) > 1:
            sccs.append(sorted(c))
sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        strong(v)
for m in sorted(graph):
    print(f"  {m} -> {' '.join(sorted(d for d in graph[m] if d in graph))}")
print("import cycles (modules that reach each other):", "none" if not sccs else "")
for c in sccs:
    print("  " + " <-> ".join(c))
