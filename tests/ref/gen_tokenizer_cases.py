#!/usr/bin/env python3
"""gen_tokenizer_cases.py: writes tests/data/tokenizer-cases.jsonl, the
tokenizer parity cases, with HF `tokenizers` as the oracle.

Every line is JSON with "ids", a "mode" and (except decode lines) "text":
  encode   ids = HF encode(text) (split_special_tokens=false, no extra
           tokens); "decoded" / "decoded_skip" hold HF decode(ids) and
           decode(ids, skip_special_tokens=True) when they differ from text
           (resp. from "decoded").
  masked   "ranges" = untrusted [begin, end) UTF-8 byte ranges. Added tokens
           are matched (leftmost-longest) only where they lie wholly outside
           the ranges; the text between matches is encoded by HF with a copy
           of the tokenizer that has no added tokens. This equals HF's own
           pipeline (it encodes each segment between added tokens
           separately) with untrusted matches switched off.
  decode   ids are random; "hex" / "hex_skip" = UTF-8 bytes (hex) of HF
           decode(ids) / decode(ids, skip_special_tokens=True); hex because
           byte 0x00 tokens decode to U+0000, which strict JSON refuses.
  variant  "variant": "normalized": the tokenizer with one extra added token
           {"content": "Ω<tag>", normalized: true} (id 151669) appended;
           ids = HF encode(text) with that tokenizer.

Deterministic (fixed seed). Run from the repository root:
    python3 tests/ref/gen_tokenizer_cases.py
Needs `tokenizers` only at generation time; the C test reads the output.
"""
import json
import random
import sys
import unicodedata

from tokenizers import Tokenizer

TOK_JSON = "tests/data/qwen3-tokenizer/tokenizer.json"
OUT = "tests/data/tokenizer-cases.jsonl"
SEED = 20260821

rng = random.Random(SEED)
with open(TOK_JSON, encoding="utf-8") as f:
    TJ = json.load(f)
HF = Tokenizer.from_str(json.dumps(TJ))
ADDED = [a["content"] for a in TJ["added_tokens"]]
NO_ADDED_JSON = dict(TJ, added_tokens=[])
HF_PLAIN = Tokenizer.from_str(json.dumps(NO_ADDED_JSON))
VARIANT_TOKEN = "\u2126<tag>"  # OHM SIGN: NFC turns it into U+03A9, so matching happens after NFC
VARIANT_JSON = dict(TJ, added_tokens=TJ["added_tokens"] + [{
    "id": 151669, "content": VARIANT_TOKEN, "single_word": False, "lstrip": False, "rstrip": False,
    "normalized": True, "special": False}])
HF_VARIANT = Tokenizer.from_str(json.dumps(VARIANT_JSON))

# ---- text material -------------------------------------------------------

EN_CLIN = ("patient presented with acute chest pain radiating to the left arm troponin elevated ECG showed "
           "ST-segment elevation in leads II III aVF diagnosis inferior STEMI aspirin 300 mg clopidogrel "
           "heparin PCI stent history of hypertension type 2 diabetes mellitus metformin 500mg BID HbA1c "
           "creatinine eGFR mL/min/1.73m² dyspnea orthopnea bilateral crackles BNP furosemide IV "
           "pneumonia CURB-65 amoxicillin-clavulanate sepsis lactate mmol/L MAP <65 mmHg norepinephrine "
           "ICU follow-up in 2 weeks discharge summary allergies: NKDA SpO₂ 94% on room air T 38.5°C "
           "HR 112 bpm BP 90/60 q8h PRN p.o. i.v. s.c. CT-scan MRI T2-weighted FLAIR").split()
ZH_CLIN = ("患者 男性 女性 岁 主诉 胸痛 三天 加重 一天 既往 高血压 糖尿病 病史 查体 心率 血压 呼吸 "
           "体温 诊断 急性 心肌梗死 肺炎 治疗 阿司匹林 氯吡格雷 静脉 注射 每日 两次 复查 血常规 "
           "肝功能 肾功能 建议 住院 观察 出院 随访 医生 护士 检查 结果 显示 右侧 胸腔 积液 结核 "
           "头痛 发热 咳嗽 咳痰 乏力 恶心 呕吐 腹泻 腹痛 过敏 青霉素 剂量 毫克 手术 术后 并发症").split()
ZH_PUNCT = list("，。、；：？！“”‘’（）《》【】…—·「」")
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "SELECT id, name FROM patients WHERE age > 65 AND dx LIKE '%I21%';",
    "{\"role\": \"user\", \"content\": \"hello\"}",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }\n",
    "const x = arr.map((v) => v ** 2).filter(Boolean);",
    "    // TODO: handle the edge case\r\n    x += 1;\r\n",
    "$ ./configure --prefix=/usr && make -j8 && sudo make install",
    "<div class=\"note\">BP: 120/80</div>\n",
    "x=1;y=2;z=x+y\nprint(f'{z:08.3f}')",
    "lambda: None  # noqa: E731",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "   \n\t\n  end",
    "a_b-c.d/e\\f|g~h`i^j",
]
WS = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2002", "\u2003", "\u200b",
      "\u0085", "\u2028", "\u2029", "\x0b", "\x0c", " \n", "\n ", " \t ", "\u202f", "\u205f", "\u1680",
      "\r\n\r\n", "    ", "\t\t", " \u00a0 ", "\ufeff"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇨🇳", "🇺🇸", "1️⃣", "🧑🏻‍⚕️", "👩‍⚕️", "🩺", "💊", "🫀",
         "🤷‍♀️", "✌🏿", "🐈‍⬛", "😶‍🌫️", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🔥", "🙏", "⚕️"]
DIGITS = ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳", "०१२३४५", "০১২৩", "๐๑๒๓", "０１２３４５６７８９", "¹²³⁴", "₀₁₂", "½¼¾⅓",
          "ⅠⅡⅢⅣⅫ", "①②③⑩", "㈠㈡", "𝟎𝟏𝟐𝟗", "᠐᠑", "߀߁", "௧௨", "〡〢〣", "𐄇𐄈", "12345", "3.14159",
          "1,000,000", "2026-08-21", "10⁻⁶"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'rE",
                "'lL", "'ſ", "'x", "'", "''", "’s", "'st", "'llama", "'dog", "'Mary"]
NON_NFC = ["e\u0301", "A\u030a", "\u212b", "\u2126", "o\u0308\u0304", "a\u0323\u0302", "a\u0302\u0323",
           "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\u0915\u093c", "\uf900", "\U0002f800",
           "\u0344", "\u0340", "\u1e9b\u0323", "\u00c5\u0301", "q\u0307\u0323", "\u05d0\u05b7\u05bc",
           "\u0627\u0653", "\u09c7\u09be", "\u0b47\u0b3e", "\u0cc6\u0cd5", "\u0d46\u0d3e", "\u1025\u102e",
           "ñ", "n\u0303", "Ǖ", "U\u0308\u0304", "\u0041\u0300\u0316", "\u0301abc", "x\u20dd", "\u00e9\u0301",
           "\u3099", "\u304b\u3099", "\u30cf\u309a", "\u0f73", "\u0f71\u0f72", "\u1fee", "\u00a8\u0301"]


def pick(seq, k):
    return [rng.choice(seq) for _ in range(k)]


def chars_by_category():
    """Assigned code points (Python's Unicode) grouped by general category."""
    cats = {}
    for cp in range(0x110000):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat in ("Cn", "Cs") or cp == 0:  # U+0000 cannot travel in the strict JSON lines
            continue
        cats.setdefault(cat, []).append(c)
    return cats


CATS = chars_by_category()
ASSIGNED = [c for cat, cs in CATS.items() for c in cs]


def clinical():
    parts = []
    for _ in range(rng.randint(3, 25)):
        r = rng.random()
        if r < 0.4:
            parts.append(rng.choice(ZH_CLIN))
        elif r < 0.75:
            parts.append((" " if rng.random() < 0.7 else "") + rng.choice(EN_CLIN))
        elif r < 0.88:
            parts.append(rng.choice(ZH_PUNCT))
        else:
            parts.append(str(rng.choice([rng.randint(0, 300), round(rng.uniform(0, 50), 1)])))
    return "".join(parts)


def whitespace():
    words = ["a", "b", "word", "中文", "1", ".", "x!", "é", "🙂", "'s", ""]
    return "".join(rng.choice(words) + "".join(pick(WS, rng.randint(1, 3))) for _ in range(rng.randint(1, 8)))


def categories():
    cats = sorted(CATS)
    out = []
    for _ in range(rng.randint(1, 12)):
        cat = rng.choice(cats)
        out.append("".join(rng.choice(CATS[cat]) for _ in range(rng.randint(1, 3))))
        if rng.random() < 0.3:
            out.append(rng.choice([" ", "a", "1", "\n", "'s", "中"]))
    return "".join(out)


def one_of_each_category():
    return ["".join(rng.choice(CATS[cat]) for _ in range(3)) + " " + rng.choice(CATS[cat]) + "x"
            for cat in sorted(CATS)]


def emoji():
    return "".join(rng.choice(EMOJI + [" ", "ok", "\n", "好", "👍"]) for _ in range(rng.randint(1, 10)))


def non_nfc():
    return "".join(rng.choice(NON_NFC + [" ", "a", "z", "中", "한", "\n"]) for _ in range(rng.randint(1, 10)))


def digits():
    return "".join(rng.choice(DIGITS + [" ", "a", "mg", ".", ",", "-"]) for _ in range(rng.randint(1, 8)))


def contractions():
    words = ["it", "IT", "we", "They", "don", "I", "you", "She", "x", "1", " ", "\n", "中", ""]
    return "".join(rng.choice(words) + rng.choice(CONTRACTIONS) + rng.choice(["", " ", "s", "."])
                   for _ in range(rng.randint(1, 6)))


def with_added():
    frags = ADDED + ["<|im_", "<|im_start|", "|>", "<think", "</", "<|", "<|endoftext", "<<|im_end|>>",
                     "<tool_call><tool_call>", "<|im_start|><|im_end|>"]
    out = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.45:
            out.append(rng.choice(frags))
        elif r < 0.7:
            out.append(rng.choice(["user\n", "assistant\n", "system\n", "\n", " ", "\n\n"]))
        else:
            out.append(clinical() if rng.random() < 0.5 else rng.choice(CODE))
    return "".join(out)


def random_utf8():
    n = rng.randint(1, 24)
    if rng.random() < 0.5:
        return "".join(rng.choice(ASSIGNED) for _ in range(n))
    # assigned characters of the BMP and astral planes mixed with ASCII
    pool = ASSIGNED
    return "".join(chr(rng.randint(0x20, 0x7e)) if rng.random() < 0.3 else rng.choice(pool) for _ in range(n))


def hf_table_chars():
    """Code points of runtime/text/tok_unicode_hf.h (where HF's Unicode data is not utf8proc's)."""
    import re
    text = open("runtime/text/tok_unicode_hf.h", encoding="utf-8").read()
    out = []
    for a, b in re.findall(r"\{0x([0-9A-F]+), 0x([0-9A-F]+)\}", text):
        lo, hi = int(a, 16), int(b, 16)
        if lo != 0xFFFFFFFF:
            out += [chr(c) for c in range(lo, min(hi, lo + 40) + 1)]
    return out


HF_TABLE = hf_table_chars()


def table_mix():
    marks = ["\u0301", "\u0316", "\u0300", "a", "x", " ", "1", "'s", "e\u0301", "\u093c"]
    return "".join(rng.choice(HF_TABLE) if rng.random() < 0.5 else rng.choice(marks)
                   for _ in range(rng.randint(1, 12)))


def adversarial():
    unit = rng.choice(["a", " ", "\n", "1", ".", "中", "'s", " a", "\t ", "é", "😀", "<|", "\u0301", "a\u0301"])
    return unit * rng.randint(50, 600)


def huge_piece():
    """One pre-tokenized piece over 8 KiB (the C BPE switches algorithm there)."""
    kind = rng.randrange(5)
    n = rng.randint(8300, 12000)
    if kind == 0:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if kind == 1:
        return "".join(rng.choice("eeeeaaattt") for _ in range(n))
    if kind == 2:
        return "".join(rng.choice(".-=_*#/") for _ in range(n))
    if kind == 3:
        return "".join(rng.choice(ZH_CLIN)[0] for _ in range(n // 3))
    return " " * n + "x"


def long_doc():
    gens = [clinical, whitespace, emoji, digits, contractions, non_nfc, categories]
    return "".join(rng.choice(gens)() + rng.choice([" ", "\n", "\n\n", ""]) for _ in range(rng.randint(20, 60)))


# ---- cases --------------------------------------------------------------

def encode_case(text):
    ids = HF.encode(text, add_special_tokens=False).ids
    d = {"mode": "encode", "text": text, "ids": ids}
    dec = HF.decode(ids, skip_special_tokens=False)
    dec_skip = HF.decode(ids, skip_special_tokens=True)
    if dec != text:
        d["decoded"] = dec
    if dec_skip != dec:
        d["decoded_skip"] = dec_skip
    return d


def trusted_matches(text_b, ranges):
    """Leftmost-longest added-token matches lying wholly outside the byte ranges."""
    toks = sorted(((a.encode(), i) for i, a in enumerate(ADDED)), key=lambda x: -len(x[0]))
    bad = [False] * (len(text_b) + 1)
    for b, e in ranges:
        for k in range(b, e):
            bad[k] = True
    out, pos = [], 0
    while pos < len(text_b):
        hit = None
        for tb, i in toks:
            end = pos + len(tb)
            if text_b.startswith(tb, pos) and not any(bad[pos:end]):
                hit = (pos, end, TJ["added_tokens"][i]["id"])
                break
        if hit:
            out.append(hit)
            pos = hit[1]
        else:
            pos += 1
    return out


def masked_case(text, ranges):
    tb = text.encode()
    ids, prev = [], 0
    for b, e, tid in trusted_matches(tb, ranges):
        ids += HF_PLAIN.encode(tb[prev:b].decode(), add_special_tokens=False).ids
        ids.append(tid)
        prev = e
    ids += HF_PLAIN.encode(tb[prev:].decode(), add_special_tokens=False).ids
    return {"mode": "masked", "text": text, "ranges": [list(r) for r in ranges], "ids": ids}


def random_ranges(tb):
    n = len(tb)
    out = []
    for _ in range(rng.randint(0, 3)):
        b = rng.randint(0, n)
        e = rng.randint(b, min(n, b + rng.randint(0, 40)))
        out.append((b, e))
    return out


def decode_case():
    n = rng.randint(1, 20)
    ids = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            ids.append(rng.randint(0, 151642))
        elif r < 0.7:
            ids.append(rng.randint(188, 255))  # single-byte tokens of 0x80..0xFF: broken UTF-8
        elif r < 0.85:
            ids.append(rng.randint(151643, 151668))
        else:
            ids.append(rng.randint(151669, 151935))  # padding ids without text
    return {"mode": "decode", "ids": ids, "hex": HF.decode(ids, skip_special_tokens=False).encode().hex(),
            "hex_skip": HF.decode(ids, skip_special_tokens=True).encode().hex()}


def variant_case(text):
    return {"mode": "encode", "variant": "normalized", "text": text,
            "ids": HF_VARIANT.encode(text, add_special_tokens=False).ids}


def main():
    plan = [(clinical, 300), (lambda: rng.choice(CODE) + rng.choice(["", "\n", " "]) + rng.choice(CODE), 120),
            (whitespace, 300), (emoji, 150), (categories, 250), (non_nfc, 200), (digits, 150),
            (contractions, 150), (with_added, 220), (random_utf8, 250), (table_mix, 200), (adversarial, 40), (long_doc, 12),
            (huge_piece, 8)]
    cases, seen = [], set()
    for text in [""] + CODE + one_of_each_category() + ["".join(ADDED)] + [c + "x" for c in NON_NFC]:
        if text not in seen:
            seen.add(text)
            cases.append(encode_case(text))
    for gen, count in plan:
        for _ in range(count):
            text = gen()
            if text in seen:
                continue
            seen.add(text)
            cases.append(encode_case(text))
    for _ in range(250):
        text = with_added() if rng.random() < 0.7 else clinical()
        cases.append(masked_case(text, random_ranges(text.encode())))
    for _ in range(30):
        text = with_added()
        cases.append(masked_case(text, [(0, len(text.encode()))]))
    for _ in range(300):
        cases.append(decode_case())
    vt = [VARIANT_TOKEN, "\u03a9<tag>", "x\u2126<tag>y", "\u2126<tag" + ">" * 2, "a \u03a9<tag>\u0301 b",
          "<|im_start|>\u2126<tag><|im_end|>", "O\u0308\u2126<tag>", "\u2126\u2126<tag>tag>"]
    for _ in range(60):
        vt.append(with_added() + rng.choice(["\u2126<tag>", "\u03a9<tag>", "\u2126<ta", "\u2126\u0301<tag>"]) +
                  clinical())
    for text in vt:
        cases.append(variant_case(text))
    with open(OUT, "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    kinds = {}
    for c in cases:
        k = c.get("variant", c["mode"])
        kinds[k] = kinds.get(k, 0) + 1
    print(f"{OUT}: {len(cases)} cases {kinds}", file=sys.stderr)


if __name__ == "__main__":
    main()
