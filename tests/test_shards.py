"""tests/shards.py: every test file runs in exactly one share, fixture groups together, shares balanced."""

from pathlib import Path

import pytest

from shards import SECONDS, TOGETHER, UNLISTED_SECONDS, assign, parse_shard

FILES = sorted(p.name for p in Path(__file__).parent.glob("test_*.py"))


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_file_has_one_share_and_groups_stay_together(count):
    shares = assign(FILES, count)
    assert sorted(shares) == FILES and set(shares.values()) <= set(range(count))
    for group in TOGETHER:
        assert len({shares[name] for name in group if name in shares}) == 1
    weight = lambda name: SECONDS.get(name, UNLISTED_SECONDS)  # noqa: E731
    loads = [sum(weight(n) for n in FILES if shares[n] == i) for i in range(count)]
    # Greedy heaviest-first: no share exceeds another by more than the heaviest unit.
    heaviest = max(max(sum(weight(n) for n in g) for g in TOGETHER), max(map(weight, FILES)))
    assert max(loads) - min(loads) <= heaviest


def test_a_share_is_i_of_n():
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "-1/2", "a/2", "1"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
