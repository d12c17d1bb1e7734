"""The transformer reads the whole function in windows: settings, the one encode function, pooling, save/load."""

from __future__ import annotations

import pytest
import torch

from streamguard.config import load_config
from streamguard.errors import UserError
from streamguard.models.transformer import (
    TokenDataset,
    TransformerClassifier,
    Windowing,
    collate_windows,
    encode,
    load_tokenizer,
    make_scratch_checkpoint,
)

CODE = ["int add(int a, int b) { return a + b; }",
        "void copy(char *d, const char *s, int n) { for (int i = 0; i < n; i++) d[i] = s[i]; }",
        "static int check(int *p) { if (p == NULL) return -1; return *p; }"] * 4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_scratch_checkpoint(CODE, tmp_path_factory.mktemp("scratch"), vocab_size=300, hidden=32, layers=1,
                                   heads=2, max_length=64, seed=0)


@pytest.fixture(scope="module")
def tok(ckpt):
    return load_tokenizer(ckpt, 64)


def long_function(n: int) -> str:
    return "int f(int x) {\n" + "".join(f"  x = x * {i} + {i % 7};\n" for i in range(n)) + "  return x;\n}"


def test_windows_cover_the_function_back_to_back_with_the_special_tokens(tok):
    w = Windowing(window=16, stride=14, max_windows=100)
    text = long_function(20)
    bare = tok(text, add_special_tokens=False)["input_ids"]
    enc = encode([text], tok, w)
    wins = enc.windows[0]
    assert len(wins) == -(-len(bare) // 14) == w.count(len(bare)) and len(wins) > 3
    assert all(x[0] == tok.cls_token_id and x[-1] == tok.sep_token_id and len(x) <= 16 for x in wins)
    assert sum((x[1:-1] for x in wins), []) == bare  # every token once, in order
    assert enc.n_tokens == [len(bare)] and enc.truncated == [False]


def test_overlapping_windows_and_the_cap(tok):
    text = long_function(20)
    bare = tok(text, add_special_tokens=False)["input_ids"]
    over = encode([text], tok, Windowing(window=16, stride=7, max_windows=100)).windows[0]
    assert over[1][1:-1] == bare[7:21] and over[-1][1:-1] == bare[7 * (len(over) - 1):]
    capped = encode([text], tok, Windowing(window=16, stride=14, max_windows=2))
    assert len(capped.windows[0]) == 2 and capped.truncated == [True]
    assert capped.windowing.budget == 28 and sum((x[1:-1] for x in capped.windows[0]), []) == bare[:28]


def test_a_function_that_fits_is_tokenised_as_a_plain_truncating_pass(tok):
    w = Windowing(window=64, stride=62, max_windows=8)
    plain = tok(CODE[:3], truncation=True, max_length=64)["input_ids"]
    assert [ws[0] for ws in encode(CODE[:3], tok, w).windows] == plain
    assert all(len(ws) == 1 for ws in encode(CODE[:3], tok, w).windows)


def test_one_window_gives_the_logits_and_embedding_of_one_plain_pass(ckpt, tok):
    torch.manual_seed(0)
    model = TransformerClassifier(ckpt, Windowing(window=64, stride=62, max_windows=8)).eval()
    texts = CODE[:3] + [long_function(30)]  # the long one makes other rows' padding windows exist in the pooling
    ds = TokenDataset(texts, [0, 1, 0, 1], tok, model.windowing)
    assert [len(w) for w in ds.windows][:3] == [1, 1, 1] and len(ds.windows[3]) > 2
    batch = ds.collate([ds[i] for i in range(4)])
    plain = tok(CODE[:3], truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        want_logits = model.hf(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
        want_embed = model.hf.base_model(input_ids=plain["input_ids"],
                                         attention_mask=plain["attention_mask"]).last_hidden_state[:, 0]
        got_logits, got_embed = model(batch)[:3], model.embed(batch)[:3]
        alone = ds.collate([ds[i] for i in range(3)])  # one window each: the pooling is skipped
        assert torch.equal(model(alone), model.hf(input_ids=alone["input_ids"],
                                                  attention_mask=alone["attention_mask"]).logits)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_embed, want_embed, rtol=1e-5, atol=1e-5)


def test_pooling_is_masked_to_each_functions_own_windows_and_learns(ckpt, tok):
    torch.manual_seed(0)
    model = TransformerClassifier(ckpt, Windowing(window=16, stride=14, max_windows=50)).eval()
    a, b = long_function(12), long_function(25)
    ds = TokenDataset([a, b], [0, 1], tok, model.windowing)
    with torch.no_grad():
        both = model.embed(ds.collate([ds[0], ds[1]]))
        alone = model.embed(ds.collate([ds[0]]))
    torch.testing.assert_close(both[0], alone[0], rtol=1e-5, atol=1e-6)  # b's extra windows do not leak into a
    model.train()
    loss = torch.nn.functional.cross_entropy(model(ds.collate([ds[0], ds[1]])), torch.tensor([0, 1]))
    loss.backward()
    assert model.pool.score.weight.grad.abs().sum() > 0


def test_window_settings_and_pooling_are_saved_with_the_model(ckpt, tok, tmp_path):
    torch.manual_seed(3)
    model = TransformerClassifier(ckpt, Windowing(window=32, stride=20, max_windows=5))
    with torch.no_grad():
        model.pool.score.weight.add_(1.0)
    model.save(tmp_path / "m", tok)
    back = TransformerClassifier(tmp_path / "m").eval()
    assert back.windowing == Windowing(window=32, stride=20, max_windows=5)
    assert torch.equal(back.pool.score.weight, model.pool.score.weight)
    ds = TokenDataset([long_function(15)], [1], tok, back.windowing)
    with torch.no_grad():
        torch.testing.assert_close(back(ds.collate([ds[0]])), model.eval()(ds.collate([ds[0]])))


def test_config_defaults_and_bad_settings_are_one_line_errors():
    cfg = load_config("demo")
    w = Windowing.from_config(cfg.transformer)
    assert (w.window, w.stride) == (cfg.transformer.max_length, cfg.transformer.max_length - 2)
    with pytest.raises(UserError, match=r"transformer.window=300: above transformer.max_length=256"):
        Windowing.from_config(load_config("demo", sets=["transformer.window=300"]).transformer)
    with pytest.raises(UserError, match=r"transformer.stride=255: expected 1..254"):
        Windowing.from_config(load_config("demo", sets=["transformer.stride=255"]).transformer)
    with pytest.raises(UserError, match=r"transformer.max_windows=0"):
        Windowing.from_config(load_config("demo", sets=["transformer.max_windows=0"]).transformer)


def test_collate_pads_every_window_to_the_requested_width(tok):
    items = [{"windows": [[0, 5, 2], [0, 6, 7, 2]], "labels": 1}, {"windows": [[0, 9, 2]], "labels": 0}]
    b = collate_windows(items, tok.pad_token_id, width=8)
    assert b["input_ids"].shape == (3, 8) and b["window_counts"].tolist() == [2, 1]
    assert b["attention_mask"].sum(1).tolist() == [3, 4, 3] and b["labels"].tolist() == [1, 0]


def test_reading_windows_in_passes_gives_the_same_logits_and_gradients(ckpt, tok, tmp_path):
    import json
    import shutil

    no_dropout = shutil.copytree(ckpt, tmp_path / "ckpt")  # dropout off: one pass and several draw masks differently
    conf = json.loads((no_dropout / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (no_dropout / "config.json").write_text(json.dumps(conf))
    texts = [long_function(12), long_function(25), CODE[0]]
    torch.manual_seed(0)
    one = TransformerClassifier(no_dropout, Windowing(window=16, stride=14, max_windows=50))
    chunked = TransformerClassifier(no_dropout, Windowing(window=16, stride=14, max_windows=50), window_batch=4)
    chunked.load_state_dict(one.state_dict())
    ds = TokenDataset(texts, [0, 1, 0], tok, one.windowing)
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["input_ids"].shape[0] > 8  # several passes of 4 windows
    grads = []
    for model in (one, chunked):
        model.train()  # training mode: the passes after the first are checkpointed
        loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(one(batch), chunked(batch), rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)


def test_comments_are_not_read_when_stripped_and_the_setting_is_saved(ckpt, tok, tmp_path):
    plain = "int f(int *p, int n) {\n  if (n > 0)\n    return p[n - 1];\n  return 0;\n}"
    commented = ("/* CVE-2024-0001: fixed */\nint f(int *p, /* len */ int n) {\n  // bounds\n  if (n > 0) /* ok */\n"
                 "    return p[n - 1];\n  return 0; // done\n}")
    on = Windowing(window=32, stride=30, max_windows=8, strip_comments=True)
    off = Windowing(window=32, stride=30, max_windows=8)
    assert encode([commented], tok, on).windows == encode([plain], tok, on).windows
    assert encode([commented], tok, off).windows != encode([plain], tok, off).windows
    assert load_config("demo").transformer.strip_comments and Windowing.from_config(
        load_config("demo").transformer).strip_comments
    assert not Windowing.from_config(load_config("demo", sets=["transformer.strip_comments=false"])
                                     .transformer).strip_comments
    model = TransformerClassifier(ckpt, on)
    model.save(tmp_path / "m", tok)
    assert TransformerClassifier(tmp_path / "m").windowing == on  # inference reads functions as training did
    # a model saved before the setting existed read comments: it keeps reading them
    legacy = {k: v for k, v in on.to_dict().items() if k != "strip_comments"}
    assert Windowing.from_dict(legacy).strip_comments is False
