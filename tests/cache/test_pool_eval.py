"""`gateway cache eval --pool`: questions sent once each through the real cache logic; a hit on another
(group, lang) is a false hit; recall counts only misses whose answer was already cached; each such miss says
what refused the nearest stored question of the same answer."""

import argparse
import json

import pytest

from gateway.cache.cli import register_cli
from gateway.embeddings import Embedder

POOL = [
    # the same words under two answers: whichever comes second is served the first one's answer
    {"group": "ship.to_canada", "lang": "en", "text": "Do you ship to Canada?"},
    {"group": "ship.canada_cost", "lang": "en", "text": "Do you ship to Canada?"},
    # the same question twice under one answer: a true hit, in any order
    {"group": "password.reset", "lang": "en", "text": "How do I reset my password?"},
    {"group": "password.reset", "lang": "en", "text": "How do I reset my password?"},
    # a paraphrase the verifier refuses (another kind of question, other words): a miss of a cached answer
    {"group": "ship.saturday", "lang": "en", "text": "When do you deliver on Saturdays?"},
    {"group": "ship.saturday", "lang": "en", "text": "Do you deliver on Saturdays, and at what hours?"},
]


def run(tmp_path, capsys, *extra: str) -> list[str]:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in POOL), encoding="utf-8")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", "eval", "--pool", str(path), *extra])
    assert args.func(args) == 0
    return capsys.readouterr().out.strip().splitlines()


def write_manners(tmp_path, en_opener: str = "Hi team,"):
    """One opener and one closer per language, for `--variants --manners`."""
    path = tmp_path / "manners.json"
    manners = {
        "en_openers": [en_opener],
        "fr_openers": ["Bonjour,"],
        "en_closers": ["Thanks!"],
        "fr_closers": ["Merci !"],
    }
    path.write_text(json.dumps(manners), encoding="utf-8")
    return path


def test_pool_eval_counts_false_hits_recall_and_why_a_cached_answer_missed(tmp_path, capsys):
    if not Embedder.load(model="static").available:
        pytest.skip("static embedding table absent")
    lines = run(tmp_path, capsys, "--seeds", "3", "-v")
    assert lines[-1] == "precision 0.500 recall 0.500"  # 1 true hit, 1 false hit, 1 miss of a cached answer
    assert sum("false hit [ship." in line and "got ship." in line for line in lines) == 3  # once per seed
    misses = [line for line in lines if line.strip().startswith("miss [ship.saturday|en]")]
    assert len(misses) == 3 and all("question_kind_differs" in line for line in misses)
    assert any(line.startswith("misses of a cached answer:") and "question_kind_differs 100%" in line for line in lines)


def test_pool_eval_refuses_a_malformed_pool(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"group": "a", "text": "no language"}\n', encoding="utf-8")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", "eval", "--pool", str(path)])
    assert args.func(args) == 2
    assert "bad.jsonl:1: expected" in capsys.readouterr().err


def test_variants_eval_asks_each_stored_question_again_as_users_reask_it(tmp_path, capsys):
    if not Embedder.load(model="static").available:
        pytest.skip("static embedding table absent")
    manners = write_manners(tmp_path)
    lines = run(tmp_path, capsys, "--variants", "--seeds", "2", "--manners", str(manners))
    table = {line[:28].strip(): line[28:].split() for line in lines if line[:1].isalpha() and "asked" not in line}
    assert table["opener"][0] == "12" and table["capitals"][0] == "12"  # 6 questions x 2 seeds, each changed
    # "Do you ship to Canada?" is stored under two answers: the second one's variants get the first one's
    wrong = [line for line in lines if line.startswith("  false hit [")]
    assert wrong and all(line.startswith("  false hit [ship.") and "got ship." in line for line in wrong)
    for kind in ("opener", "closer", "capitals"):  # every other question re-asked so is served its own answer
        assert table[kind][2] == "2" and float(table[kind][1]) == 0.83, table[kind]
    assert lines[-1].startswith("near duplicates served ") and lines[-1].endswith(f"wrong {len(wrong)}")


def test_rows_of_two_shops_live_in_two_partitions(tmp_path, capsys):
    if not Embedder.load(model="static").available:
        pytest.skip("static embedding table absent")
    path = tmp_path / "shops.jsonl"
    rows = [
        {"shop": "bank", "group": "hours", "lang": "en", "text": "What are your opening hours?"},
        {"shop": "gym", "group": "hours", "lang": "en", "text": "What are your opening hours?"},
        {"shop": "gym", "group": "hours", "lang": "en", "text": "What are your opening hours please?"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cache", "eval", "--pool", str(path), "--seeds", "3"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # the gym's question is not served the bank's answer; its rewording is served the gym's
    assert "answer keys 2" in out and "false hit" not in out
    assert out.strip().splitlines()[-1] == "precision 1.000 recall 1.000"


def test_variants_eval_lists_each_variant_that_missed_when_verbose(tmp_path, capsys):
    if not Embedder.load(model="static").available:
        pytest.skip("static embedding table absent")
    manners = write_manners(tmp_path, "I moved to Lyon last week.")  # content, not manners: those variants miss
    quiet = run(tmp_path, capsys, "--variants", "--seeds", "2", "--manners", str(manners))
    lines = run(tmp_path, capsys, "--variants", "--seeds", "2", "--manners", str(manners), "-v")
    assert not any(line.startswith("  miss [") for line in quiet)
    header = next(i for i, line in enumerate(lines) if line.startswith("variant "))
    table = {line[:28].strip(): line[28:].split() for line in lines[header + 1 : -1]}  # up to the summary line
    keys = {f"{row['group']}|{row['lang']}" for row in POOL}
    for kind, (asked, served, wrong) in table.items():
        listed = [
            line for line in lines if line.startswith("  miss [") and line.split("] (", 1)[1].startswith(kind + ")")
        ]
        assert len(listed) == int(asked) - round(float(served) * int(asked)) - int(wrong), kind
        assert all(line[len("  miss [") :].split("]", 1)[0] in keys for line in listed)
    assert any(line.startswith("  miss [") for line in lines)  # this pool has variants that miss
