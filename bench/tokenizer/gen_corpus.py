#!/usr/bin/env python3
"""gen_corpus.py: writes the tokenizer benchmark corpus, deterministically.

Usage: python3 bench/tokenizer/gen_corpus.py OUT.jsonl [MEGABYTES]
One JSON string per line (a document of 1-16 KiB); about MEGABYTES (default
10) of UTF-8 text in all. Mix: English and Chinese clinical notes, chat
transcripts with Qwen control tokens, source code, tables and whitespace
runs, multilingual text with emoji, non-NFC text and digits of other scripts.
"""
import json
import random
import sys

SEED = 7
rng = random.Random(SEED)

EN = ("the patient was admitted with acute chest pain radiating to the left arm and shortness of breath "
      "troponin was elevated and the ECG showed ST elevation in the inferior leads she has a history of "
      "hypertension type 2 diabetes and chronic kidney disease stage 3 medications include metformin "
      "lisinopril atorvastatin and aspirin we recommend cardiology follow-up in two weeks blood pressure "
      "was 145/92 mmHg heart rate 98 bpm temperature 37.8 C oxygen saturation 95% on room air "
      "differential diagnosis includes pulmonary embolism aortic dissection and pericarditis CT angiography "
      "was negative for dissection the patient's symptoms improved after nitroglycerin she doesn't smoke "
      "they've been counseled on diet we'll reassess renal function creatinine 1.4 mg/dL eGFR 48").split()
ZH = ("患者 男性 女性 岁 主诉 反复 胸痛 三天 加重 一天 既往 高血压 糖尿病 病史 查体 心率 血压 呼吸 体温 "
      "诊断 急性 心肌梗死 肺炎 治疗 阿司匹林 氯吡格雷 静脉 注射 每日 两次 复查 血常规 肝功能 肾功能 建议 "
      "住院 观察 出院 随访 医生 护士 检查 结果 显示 右侧 胸腔 积液 结核 头痛 发热 咳嗽 咳痰 乏力 恶心 "
      "呕吐 腹泻 腹痛 过敏 青霉素 剂量 毫克 手术 术后 并发症 影像学 提示 双肺 纹理 增粗 考虑 感染").split()
ZH_P = list("，。、；：？！（）")
CODE = ["def {n}(x, y=None):\n    if y is None:\n        return x * 2\n    return {{'x': x, 'y': y}}\n\n",
        "for (size_t i = 0; i < n; i++) {{\n\tout[i] = {n}(in[i]) + 0x{h:04x};\n}}\n",
        "SELECT p.id, p.name, v.bp FROM patients p JOIN vitals v ON v.pid = p.id WHERE v.bp > {k};\n",
        "const {n} = async (req, res) => {{ const data = await db.find({{ id: req.params.id }}); res.json(data); }};\n",
        "    <tr><td>{n}</td><td>{k}</td><td>{h}</td></tr>\n"]
OTHER = ["Der Patient klagt über Brustschmerzen. ", "Le patient présente une fièvre depuis 3 jours. ",
         "Пациент жалуется на головную боль. ", "患者は頭痛を訴えている。", "환자는 두통을 호소합니다. ",
         "المريض يعاني من الصداع ", "रोगी को सिरदर्द है। ", "😀👍🏽 ok 🩺💊 ", "e\u0301te\u0301 cafe\u0301 ",
         "٠١٢٣ ٤٥ ", "① ② ③ ", "\u00a0\u00a0\u3000", "   \t\t\n\n\r\n"]


def en(n):
    return " ".join(rng.choice(EN) for _ in range(n)).capitalize() + ". "


def zh(n):
    return "".join(rng.choice(ZH) + (rng.choice(ZH_P) if rng.random() < 0.15 else "") for _ in range(n)) + "。"


def code():
    return rng.choice(CODE).format(n="f%d" % rng.randint(0, 999), h=rng.randint(0, 65535), k=rng.randint(0, 300))


def chat():
    turns = []
    for _ in range(rng.randint(1, 4)):
        turns.append("<|im_start|>user\n" + (zh(rng.randint(5, 30)) if rng.random() < 0.5 else en(rng.randint(8, 40)))
                     + "<|im_end|>\n<|im_start|>assistant\n<think>\n" + en(rng.randint(10, 60)) + "\n</think>\n\n"
                     + zh(rng.randint(10, 60)) + "<|im_end|>\n")
    return "".join(turns)


def document():
    target = rng.randint(1024, 16384)
    parts, size = [], 0
    gens = [(lambda: en(rng.randint(5, 40)), 30), (lambda: zh(rng.randint(5, 40)), 30), (code, 12), (chat, 10),
            (lambda: rng.choice(OTHER), 10), (lambda: "\n\n" if rng.random() < 0.5 else "\n", 8)]
    total = sum(w for _, w in gens)
    while size < target:
        r = rng.uniform(0, total)
        for g, w in gens:
            r -= w
            if r <= 0:
                s = g()
                break
        parts.append(s)
        size += len(s.encode())
    return "".join(parts)


def main():
    out = sys.argv[1]
    mb = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    size = 0
    with open(out, "w", encoding="utf-8") as f:
        while size < mb * 1e6:
            d = document()
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            size += len(d.encode())
    print(f"{out}: {size / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
