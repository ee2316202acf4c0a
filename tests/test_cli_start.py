"""The command line starts at once: parsing imports neither torch nor pandas, and `select` runs
without pandas, matplotlib or transformers (timm itself imports torchvision: timm.layers.norm_act)."""
import json
import subprocess
import sys

HEAVY = ("torch", "timm", "torchvision", "pandas", "matplotlib", "transformers")
PROBE = """
import json, sys
from weightselect.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, **{m: m in sys.modules for m in %r}}))
""" % (HEAVY,)


def _imports(*argv):
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_of_every_command_imports_nothing_heavy():
    for argv in (["--help"], ["select", "--help"], ["baseline", "--help"], ["train", "--help"],
                 ["probe", "--help"], ["recipe", "--help"], ["table", "--help"], ["figures", "--help"],
                 ["completion", "bash"]):
        got = _imports(*argv)
        assert got["code"] == 0, argv
        assert not any(got[m] for m in HEAVY), (argv, got)


def test_select_imports_no_pandas_matplotlib_or_transformers(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    kwargs = dict(img_size=16, patch_size=4, in_chans=1, depth=2)
    teacher = timm.create_model("vit_tiny_patch16_224", embed_dim=64, num_heads=2, **kwargs)
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, tmp_path / "t.safetensors")
    got = _imports("select", "--teacher", tmp_path / "t.safetensors", "--student", "vit_tiny_patch16_224",
                   "--student-kwargs", json.dumps(dict(embed_dim=32, num_heads=1, **kwargs)),
                   "-o", tmp_path / "i.safetensors")
    assert got["code"] == 0 and (tmp_path / "i.safetensors").is_file()
    assert got["torch"] and got["timm"]
    assert not (got["pandas"] or got["matplotlib"] or got["transformers"]), got
    assert torch.load  # the test itself runs with torch: only the child process is measured


def test_table_jobs_import_no_torch():
    """What a table job imports (workflow_scripts/table.py, the results package, io's JSON and text
    writers) loads pandas only: torch is imported by the functions that read or write tensors."""
    probe = ("import json, sys\n"
             "from weightselect import rulelog\n"
             "from weightselect.io import write_text, write_json, read_json, atomic_write\n"
             "from weightselect.results import build_table, paper_gap, write_table\n"
             "from weightselect.results.html import table_subtitle, write_table_page\n"
             "print(json.dumps({m: m in sys.modules for m in %r}))" % (HEAVY,))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["pandas"] and not any(got[m] for m in HEAVY if m != "pandas"), got
