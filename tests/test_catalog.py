"""The flavor catalog is data: the built-in 13, user replacements, and clear rejections."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, run_cli

from moai_tui.catalog import load_catalog, parse_catalog
from moai_tui.errors import UsageError


def reference_table() -> list[tuple[str, int, int, int]]:
    rows = []
    for line in (FIXTURES / "reference" / "moreh-cli.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and all(cells[i].isdigit() for i in (0, 2, 3, 4)):
            rows.append((cells[1], int(cells[2]), int(cells[3]), int(cells[4])))
    return rows


def test_builtin_catalog_is_the_reference_table():
    catalog = load_catalog()
    assert [(f.name, f.gpus, f.nodes, f.total_mib) for f in catalog.flavors] == reference_table()
    assert len(reference_table()) == 13


LOWERCASE = """
mib_per_gpu = 65520
gpus_per_node = 8
flavors = [
  {name = "micro", gpus = 1, nodes = 1}, {name = "small", gpus = 2, nodes = 1},
  {name = "medium", gpus = 4, nodes = 1}, {name = "large", gpus = 8, nodes = 1},
  {name = "xlarge", gpus = 16, nodes = 2}, {name = "2xlarge", gpus = 32, nodes = 4},
  {name = "4xlarge", gpus = 64, nodes = 8}, {name = "8xlarge", gpus = 128, nodes = 16},
]
"""


def test_user_catalog_replaces_builtin(config_dir):
    config_dir.mkdir(parents=True)
    (config_dir / "catalog.toml").write_text(LOWERCASE)
    result = run_cli("switch", input="6\nq\n")
    assert "Selection (1-8, q, Q): " in result.stdout and "8. 8xlarge\n" in result.stdout
    assert 'switched to  "2xlarge"' in result.stdout


def test_catalog_flag_overrides(config_dir, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(LOWERCASE)
    assert 'switched to  "micro"' in run_cli("switch", "--catalog", str(path), "-M", "micro").stdout


@pytest.mark.parametrize(
    "text, needle",
    [
        ("flavors = [", "not valid TOML"),
        ("gpus_per_node = 8\nflavors = []", "'mib_per_gpu' must be a positive integer"),
        ("mib_per_gpu = 1\ngpus_per_node = 8\nflavors = []", "non-empty 'flavors' list"),
        (
            "mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a', gpus=0, nodes=1}]",
            "flavor #1 ('a'): 'gpus' must be a positive integer",
        ),
        (
            "mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a', gpus=1, nodes=1},"
            "{name='A', gpus=2, nodes=1}]",
            "flavor #2 ('A'): name appears twice",
        ),
        (
            "mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a', gpus=16, nodes=1}]",
            "16 GPUs do not fit on 1 node(s) of 8 GPUs",
        ),
        (
            "mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a*', gpus=1, nodes=1}]",
            "flavor #1: 'name' must be a non-empty string",
        ),
        (
            "mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a', gpus=2, nodes=3}]",
            "more nodes (3) than GPUs (2)",
        ),
    ],
)
def test_invalid_catalog_names_file_entry_reason(text, needle):
    with pytest.raises(UsageError) as caught:
        parse_catalog(text, "/etc/moai/cat.toml")
    assert "/etc/moai/cat.toml" in str(caught.value) and needle in str(caught.value)


def test_invalid_catalog_from_cli_is_one_line_exit_2(config_dir, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("mib_per_gpu = 1\ngpus_per_node = 8\nflavors = [{name='a', nodes=1}]")
    result = run_cli("switch", "--catalog", str(path), "-M", "1")
    assert result.returncode == 2 and str(path) in result.stderr and "'gpus'" in result.stderr
