#!/usr/bin/env python3
"""Rewrites one CUDA source of kernels/ into C++ that the host emulation (include/cuda_runtime.h) compiles.

Usage: convert_kernel.py IN OUT

Only three constructs change; everything else is compiled as written:
  kernel<<<grid, block[, smem[, stream]]>>>(args);
      -> nq_emu_launch((const void*)&kernel, "kernel", grid, block[, smem[, stream]], [&] { kernel(args); });
  extern __shared__ [__align__(n)] T name[];
      -> T* name = reinterpret_cast<T*>(::nq_emu::dyn_smem());      (the launch's dynamic shared memory)
  __shared__ T name[dims];
      -> a per-block slot, filled with 0xff bytes at its first touch in each block (uninitialised shared memory)
Text in // comments is left alone.
"""
import re
import sys


def in_line_comment(s, pos):
    start = s.rfind('\n', 0, pos) + 1
    return '//' in s[start:pos]


def convert(s):
    def dynamic(m):
        if in_line_comment(s, m.start()):
            return m.group(0)
        return '%s* %s = reinterpret_cast<%s*>(::nq_emu::dyn_smem());' % (m.group(1), m.group(2), m.group(1))

    s = re.sub(r'extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:<>\s\*]+?)\s+(\w+)\s*\[\s*\]\s*;', dynamic, s)

    def static(m):
        if in_line_comment(s, m.start()):
            return m.group(0)
        typ, name, dims = m.group(1).strip(), m.group(2), m.group(3) or ''
        return ('static thread_local ::nq_emu::SharedSlot<%s%s> %s_emu_slot; auto& %s = %s_emu_slot.get();'
                % (typ, dims, name, name, name))

    s = re.sub(r'__shared__\s+([^;=\(\)/]+?)\s+(\w+)\s*((?:\[[^\]]*\])*)\s*;', static, s)

    out, i = [], 0
    launch = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<')
    while True:
        m = launch.search(s, i)
        if not m:
            out.append(s[i:])
            break
        if in_line_comment(s, m.start()):
            out.append(s[i:m.end()])
            i = m.end()
            continue
        out.append(s[i:m.start()])
        name = m.group(1)
        close = s.index('>>>', m.end())
        config = s[m.end():close]
        open_paren = close + 3
        while s[open_paren].isspace():
            open_paren += 1
        if s[open_paren] != '(':
            raise SystemExit('convert_kernel: cannot parse the launch at: ' + s[m.start():open_paren + 40])
        depth, e = 0, open_paren
        while True:
            if s[e] == '(':
                depth += 1
            elif s[e] == ')':
                depth -= 1
                if depth == 0:
                    break
            e += 1
        args = s[open_paren + 1:e]
        out.append('nq_emu_launch((const void*)&%s, "%s", %s, [&] { %s(%s); })' % (name, name, config, name, args))
        i = e + 1
    return ''.join(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = convert(f.read())
    for line in text.split('\n'):
        code = line.split('//')[0]
        if '<<<' in code or re.search(r'\b__shared__\b', code):
            raise SystemExit('convert_kernel: %s: not converted: %s' % (src, line.strip()))
    with open(dst, 'w') as f:
        f.write('// Generated from %s by tests/cuda_emu/convert_kernel.py: do not edit.\n#line 1 "%s"\n' % (src, src))
        f.write(text)


if __name__ == '__main__':
    main()
