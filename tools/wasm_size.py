#!/usr/bin/env python3
"""Where a component's bytes go: code bytes per crate, from the name section.

Usage: tools/wasm_size.py COMPONENT.wasm [TOP]

Needs a build that keeps symbol names (`make size` builds one with
`strip = false` into its own target directory). Reads the core modules
inside the component, sums the code section's function bodies by the crate
their (demangled-enough) names start with, and prints the largest crates and
functions; data segments are counted apart.
"""
import collections
import re
import sys


def leb(data, i):
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def sections(data, start, end):
    i = start
    while i < end:
        sid = data[i]
        size, j = leb(data, i + 1)
        yield sid, j, j + size
        i = j + size


def core_modules(data, start, end, layer_component):
    """Yields (start, end) of each core module, recursing into nested components."""
    if not layer_component:
        yield start, end
        return
    for sid, s, e in sections(data, start, end):
        if sid == 1:  # core module
            yield s + 8, e
        elif sid == 4:  # nested component
            yield from core_modules(data, s + 8, e, True)


def crate_of(name):
    """The crate a symbol belongs to: the first path segment of a legacy
    mangled name (`_ZN4core3fmt...` -> core), of `<T as Trait>` impls the
    type's crate, else the leading identifier (C functions keep theirs)."""
    m = re.match(r"_ZN(\d+)", name)
    if m:
        n = int(m.group(1))
        start = m.end()
        ident = name[start:start + n]
        if ident.startswith("_$LT$"):
            inner = re.match(r"_\$LT\$(?:\$RF\$)?(?:mut\$u20\$)?(?:dyn\$u20\$)?([A-Za-z_][A-Za-z0-9_]*)", ident)
            return inner.group(1) if inner else ident
        return ident
    m = re.match(r"<?&?(?:mut )?(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)", name)
    return m.group(1) if m else "?"


def analyse(data, start, end):
    imported_funcs = 0
    bodies = []
    names = {}
    data_bytes = 0
    for sid, s, e in sections(data, start, end):
        if sid == 2:
            count, i = leb(data, s)
            for _ in range(count):
                for _ in range(2):
                    n, i = leb(data, i)
                    i += n
                kind = data[i]
                i += 1
                if kind == 0:
                    _, i = leb(data, i)
                    imported_funcs += 1
                elif kind == 1:
                    i += 1
                    flags, i = leb(data, i)
                    _, i = leb(data, i)
                    if flags & 1:
                        _, i = leb(data, i)
                elif kind == 2:
                    flags, i = leb(data, i)
                    _, i = leb(data, i)
                    if flags & 1:
                        _, i = leb(data, i)
                elif kind == 3:
                    i += 2
                else:
                    _, i = leb(data, i)
        elif sid == 10:
            count, i = leb(data, s)
            for _ in range(count):
                size, j = leb(data, i)
                bodies.append(size + (j - i))
                i = j + size
        elif sid == 11:
            data_bytes += e - s
        elif sid == 0:
            n, i = leb(data, s)
            if data[i:i + n] == b"name":
                i += n
                while i < e:
                    sub = data[i]
                    size, j = leb(data, i + 1)
                    if sub == 1:
                        count, k = leb(data, j)
                        for _ in range(count):
                            idx, k = leb(data, k)
                            ln, k = leb(data, k)
                            names[idx] = data[k:k + ln].decode("utf-8", "replace")
                            k += ln
                    i = j + size
    return imported_funcs, bodies, names, data_bytes


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    data = open(path, "rb").read()
    layer_component = data[6:8] == b"\x01\x00"
    by_crate = collections.Counter()
    by_fn = collections.Counter()
    total_code = total_data = 0
    for start, end in core_modules(data, 8, len(data), layer_component):
        imported, bodies, names, data_bytes = analyse(data, start, end)
        total_data += data_bytes
        for k, size in enumerate(bodies):
            name = names.get(imported + k, f"#{imported + k}")
            by_crate[crate_of(name)] += size
            by_fn[name] += size
            total_code += size
    print(f"{path}: {len(data):,} bytes; code {total_code:,}, data segments {total_data:,}")
    print("code by crate:")
    for crate, size in by_crate.most_common(top):
        print(f"  {size:>10,}  {100 * size / max(total_code, 1):5.1f}%  {crate}")
    print("largest functions:")
    for name, size in by_fn.most_common(12):
        print(f"  {size:>10,}  {name[:110]}")


if __name__ == "__main__":
    main()
