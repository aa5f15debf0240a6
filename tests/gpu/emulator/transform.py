"""Rewrites CUDA C++ into C++ for the CPU emulator (include/cuda_runtime.h):

- a launch `k<<<grid, block, smem, stream>>>(args)` becomes
  `emu_launch("k", k, grid, block, smem, stream, args)` (smem and stream 0 when left out);
- `__shared__ T a[N], b[M];` becomes statics that the emulator fills with NaN bytes for each block
  (`static T a[N]; static T b[M];` and a call of emu_shared_array for each);
- `extern __shared__ T a[];` becomes `T *a = (T *)emu_dynamic_shared();`, the block's dynamic shared memory.

Comments and string literals are left as they are. Usage: transform.py SOURCE OUTPUT
"""

import re
import sys


def code_mask(text):
    """A list of booleans, True where text[i] is code (not inside a comment, string or character literal)."""
    mask = [True] * len(text)
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif text[i] in "\"'" and not (text[i] == "'" and i > 0 and text[i - 1].isalnum()):  # not 1'000
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            mask[k] = False
        i = j
    return mask


def find_code(text, mask, what, start=0):
    """The first index >= start where what begins in code, or -1."""
    i = text.find(what, start)
    while i >= 0 and not mask[i]:
        i = text.find(what, i + 1)
    return i


def matching(text, mask, i, opening, closing):
    """The index of the bracket closing the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if not mask[j]:
            continue
        if text[j] == opening:
            depth += 1
        elif text[j] == closing:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {opening}{closing} from offset {i}")


def split_top(text):
    """text split at the commas outside (), [] and {}."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def launch_edit(text, mask, at):
    """(start, end, replacement) of the launch whose <<< is at text[at]."""
    j = at
    while text[j - 1].isspace():
        j -= 1
    k = j
    if text[k - 1] == ">":  # template arguments
        depth = 0
        while True:
            k -= 1
            if text[k] == ">":
                depth += 1
            elif text[k] == "<":
                depth -= 1
                if depth == 0:
                    break
    while text[k - 1].isalnum() or text[k - 1] in "_:":
        k -= 1
    kernel = text[k:j]
    close = find_code(text, mask, ">>>", at + 3)
    config = split_top(text[at + 3 : close])
    if not 2 <= len(config) <= 4:
        raise ValueError(f"launch of {kernel}: {len(config)} launch parameters")
    config += ["0", "0"][: 4 - len(config)]
    paren = close + 3
    while text[paren].isspace():
        paren += 1
    if text[paren] != "(":
        raise ValueError(f"launch of {kernel}: no arguments after >>>")
    end = matching(text, mask, paren, "(", ")")
    args = text[paren + 1 : end].strip()
    name = " ".join(kernel.split())
    grid, block, smem, stream = config
    replacement = (f'emu_launch("{name}", {kernel}, dim3({grid}), dim3({block}), (size_t)({smem}), '
                   f"(cudaStream_t)({stream})" + (f", {args})" if args else ")"))
    return k, end + 1, replacement


DECLARATOR = re.compile(r"^(?P<type>.*?)\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$", re.S)


def shared_edit(text, mask, at, counter):
    """(start, end, replacement) of the __shared__ declaration whose keyword is at text[at]."""
    start = at
    while True:  # storage class, qualifiers and alignment written before __shared__
        m = re.search(r"(\bextern|\bstatic|\bvolatile|__align__\s*\([^()]*\))\s*$", text[:start])
        if m is None or not mask[m.start()]:
            break
        start = m.start()
    end = find_code(text, mask, ";", at)
    prefix, rest = text[start:at], text[at + len("__shared__") : end]
    words = prefix.split()
    extern = "extern" in words
    qualifiers = " ".join(w for w in words if w not in ("extern", "static"))
    declarators = split_top(rest)
    first = DECLARATOR.match(declarators[0])
    if first is None:
        raise ValueError(f"__shared__ declaration not understood: {rest.strip()}")
    base_type = (qualifiers + " " + first.group("type")).strip()
    if extern:
        base_type = re.sub(r"__align__\s*\([^)]*\)", "", base_type).strip()
        if len(declarators) != 1 or first.group("dims").strip() != "[]":
            raise ValueError(f"extern __shared__ declaration not understood: {rest.strip()}")
        name = first.group("name")
        return start, end + 1, f"{base_type} *{name} = ({base_type} *)emu_dynamic_shared();"
    names, statics = [], []
    for i, d in enumerate(declarators):
        m = first if i == 0 else DECLARATOR.match(d)
        if m is None or (i > 0 and m.group("type").strip()):
            raise ValueError(f"__shared__ declarator not understood: {d}")
        names.append(m.group("name"))
        statics.append(f"static {base_type} {m.group('name')}{m.group('dims').rstrip()};")
    registers = [f"[[maybe_unused]] const bool emu_shared_{counter}_{i} = "
                 f"emu_shared_array(&{n}, sizeof({n}));" for i, n in enumerate(names)]
    return start, end + 1, " ".join(statics + registers)


def transform(text):
    mask = code_mask(text)
    edits = []
    at = find_code(text, mask, "<<<")
    while at >= 0:
        edits.append(launch_edit(text, mask, at))
        at = find_code(text, mask, "<<<", edits[-1][1])
    for m in re.finditer(r"\b__shared__\b", text):
        if mask[m.start()]:
            edits.append(shared_edit(text, mask, m.start(), len(edits)))
    edits.sort()
    for (s0, e0, _), (s1, _, _) in zip(edits, edits[1:]):
        if s1 < e0:
            raise ValueError("overlapping rewrites")
    for start, end, replacement in reversed(edits):
        lost_lines = text.count("\n", start, end) - replacement.count("\n")  # keep the line numbers
        text = text[:start] + replacement + "\n" * max(lost_lines, 0) + text[end:]
    return text


def main():
    source, output = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    with open(output, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{source}"\n' + transform(text))


if __name__ == "__main__":
    main()
