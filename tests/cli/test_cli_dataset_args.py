"""``facegen dataset``'s options: a spec file overridden by flags (facegen.cli.dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from facegen.cli.dataset import add_spec_arguments, spec_from_args
from facegen.dataset.spec import DatasetSpec
from facegen.errors import InvalidArgumentError


def test_spec_from_args(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    base = tmp_path / "base.yaml"
    DatasetSpec(out="from-file", num_ids=4, seed=9).to_yaml(base)
    args = parser.parse_args(["--spec", str(base), "--num-ids", "8", "--images-per-id", "3",
                              "--format", "imagefolder", "--filters", "off", "--workers", "2"])
    spec = spec_from_args(args)
    assert (spec.out, spec.num_ids, spec.seed, spec.images_per_id, spec.format, spec.filters, spec.workers) == \
        ("from-file", 8, 9, 3, "imagefolder", False, 2)
    with pytest.raises(InvalidArgumentError, match="--out"):
        spec_from_args(parser.parse_args(["--num-ids", "2"]))
