#!/usr/bin/env python3
"""gen_tok_unicode_tables.py: writes runtime/text/tok_unicode_hf.h, the few
places where HF tokenizers' Unicode data differs from utf8proc's, found by
asking HF tokenizers itself (the oracle) about every code point.

HF tokenizers 0.23 takes its two Unicode views from different libraries:
  * the split regex runs in Oniguruma (onig crate), whose \\p{L} / \\p{N}
    tables are newer than utf8proc 2.8 (Unicode 15.0): letters and numbers
    assigned since are "other" for utf8proc but L / N for HF;
  * NFC comes from unicode-normalization-alignments 0.1.12, which embeds
    Unicode 9.0 tables: marks and decompositions added since are unknown to
    it (combining class 0, no decomposition), while utf8proc reorders or
    composes them.
The C tokenizer uses utf8proc plus these two override lists:
  TOK_HF_LETTER / TOK_HF_NUMBER  ranges HF classes as \\p{L} / \\p{N} where
                                 utf8proc says neither;
  TOK_HF_NFC_INERT               code points HF's NFC leaves alone although
                                 utf8proc normalizes them: the C NFC splits
                                 the text at them (they are plain starters to
                                 HF, so nothing composes or reorders across).
The script verifies, on probe strings, that the C rules reproduce HF, and
fails loudly otherwise. Needs `tokenizers` and the system libutf8proc.
Run from the repository root:  python3 tests/ref/gen_tok_unicode_tables.py
"""
import ctypes
import sys

from tokenizers import Tokenizer

TOK_JSON = "tests/data/qwen3-tokenizer/tokenizer.json"
OUT = "runtime/text/tok_unicode_hf.h"

u = ctypes.CDLL("libutf8proc.so.2")
u.utf8proc_unicode_version.restype = ctypes.c_char_p
u.utf8proc_category.restype = ctypes.c_int
u.utf8proc_map.restype = ctypes.c_ssize_t
u.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
u.utf8proc_decompose_char.restype = ctypes.c_ssize_t
u.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32), ctypes.c_ssize_t,
                                      ctypes.c_int, ctypes.c_void_p]
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]
STABLE, COMPOSE, DECOMPOSE = 1 << 1, 1 << 3, 1 << 4


class Prop(ctypes.Structure):
    _fields_ = [("category", ctypes.c_int16), ("combining_class", ctypes.c_int16)]


u.utf8proc_get_property.restype = ctypes.POINTER(Prop)

HF = Tokenizer.from_file(TOK_JSON)
PT = HF.pre_tokenizer
NORM = HF.normalizer
SPACE = {0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000} | set(
    range(0x2000, 0x200b))
CODEPOINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def u_class(c):
    """The class the C scanner derives from utf8proc (as tok_unicode.c)."""
    if c in (10, 13):
        return "R"
    if c in SPACE:
        return "W"
    k = u.utf8proc_category(c)
    return "L" if 1 <= k <= 5 else "N" if 9 <= k <= 11 else "O"


def hf_class(c):
    """The class HF's split regex gives c, read off how it splits probe strings."""
    if c in (10, 13):
        return "R"
    ch = chr(c)
    p1 = PT.pre_tokenize_str("a" + ch + "a")
    if len(p1) == 1:
        return "L"   # letters run
    if len(p1) == 3:
        return "N"   # a number stands alone
    return "O" if len(PT.pre_tokenize_str("!" + ch)) == 1 else "W"


def u_nfc(s):
    b = s.encode()
    dst = ctypes.c_void_p()
    n = u.utf8proc_map(b, len(b), ctypes.byref(dst), STABLE | COMPOSE)
    if n < 0:
        raise RuntimeError("utf8proc_map failed")
    out = ctypes.string_at(dst, n).decode()
    libc.free(dst)
    return out


def decomp(c):
    buf = (ctypes.c_int32 * 8)()
    k = u.utf8proc_decompose_char(c, buf, 8, DECOMPOSE, None)
    return [buf[i] for i in range(k)]


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def main():
    version = u.utf8proc_unicode_version().decode()
    # 1. regex classes
    letter, number = [], []
    for c in CODEPOINTS:
        a, b = u_class(c), hf_class(c)
        if a == b:
            continue
        if a == "O" and b == "L":
            letter.append(c)
        elif a == "O" and b == "N":
            number.append(c)
        else:
            sys.exit(f"U+{c:04X}: utf8proc class {a}, HF class {b}: not an override this file can express")
    # 2. NFC: every code point utf8proc treats as more than a plain starter
    second, decomposable = set(), {}
    for c in CODEPOINTS:
        d = decomp(c)
        if d != [c]:
            decomposable[c] = d
            second.update(d[1:])
    candidates = [c for c in CODEPOINTS
                  if u.utf8proc_get_property(c).contents.combining_class or c in decomposable or c in second]
    inert = []

    def probes(c):
        ch = chr(c)
        ps = [ch, "x" + ch, "x\u0301" + ch, "x" + ch + "\u0316", "x" + ch + "\u0301", "x\u0316" + ch]
        if c in decomposable:
            ps.append("".join(map(chr, decomposable[c])))
        for p, d in decomposable.items():
            if c in d[1:] and len(ps) < 12:
                ps.append("".join(map(chr, d)))
        return ps

    for c in candidates:
        if any(NORM.normalize_str(p) != u_nfc(p) for p in probes(c)):
            inert.append(c)
    inert_set = set(inert)

    def split_nfc(s):  # the C rule: utf8proc NFC between the HF-inert code points
        out, cur = [], []
        for ch in s:
            if ord(ch) in inert_set:
                out.append(u_nfc("".join(cur)) + ch)
                cur = []
            else:
                cur.append(ch)
        return "".join(out) + u_nfc("".join(cur))

    bad = [(c, p) for c in candidates for p in probes(c) if NORM.normalize_str(p) != split_nfc(p)]
    if bad:
        c, p = bad[0]
        sys.exit(f"{len(bad)} probes still differ, first U+{c:04X} in {p!r}")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("/* tok_unicode_hf.h: GENERATED by tests/ref/gen_tok_unicode_tables.py, do not edit.\n"
                " * Where HF tokenizers' Unicode data differs from utf8proc " + version + " (see that\n"
                " * script): [first, last] code point ranges. Private to tok_unicode.c. */\n")
        f.write("#ifndef MS_TOK_UNICODE_HF_H\n#define MS_TOK_UNICODE_HF_H\n\n#include <stdint.h>\n\n")
        f.write(f'#define TOK_HF_TABLES_UTF8PROC "{version}"\n\n')
        for name, cps, what in [("TOK_HF_LETTER", letter, "\\p{L} for HF's regex, not a letter for utf8proc"),
                                ("TOK_HF_NUMBER", number, "\\p{N} for HF's regex, not a number for utf8proc"),
                                ("TOK_HF_NFC_INERT", inert, "left alone by HF's NFC (Unicode 9), normalized by utf8proc")]:
            rs = ranges(cps)
            f.write(f"/* {what}: {len(cps)} code points */\n")
            f.write(f"static const uint32_t {name}[][2] = {{\n")
            for i in range(0, len(rs), 4):
                f.write("    " + " ".join(f"{{0x{a:05X}, 0x{b:05X}}}," for a, b in rs[i:i + 4]) + "\n")
            if not rs:
                f.write("    {0xFFFFFFFF, 0xFFFFFFFF},\n")
            f.write("};\n\n")
        f.write("#endif\n")
    print(f"{OUT}: utf8proc {version}: {len(letter)} letters, {len(number)} numbers, "
          f"{len(inert)} NFC-inert code points ({len(candidates)} candidates checked)", file=sys.stderr)


if __name__ == "__main__":
    main()
