"""attention="auto" / remat="auto": what each backend gets, and the planner counting what auto picks
(micro_batch_size="auto": tests/test_micro_batch_auto.py)."""

import os

import pytest

from conftest import REPO
from jaxft.errors import ConfigError
from jaxft.train import auto


@pytest.mark.parametrize("platform,dtype,want", [
    ("gpu", "bfloat16", "cudnn"), ("gpu", "float32", "xla"), ("tpu", "bfloat16", "chunked"),
    ("tpu", "float32", "chunked"), ("cpu", "bfloat16", "xla"), ("cpu", "float32", "xla")])
def test_auto_attention_by_backend(platform, dtype, want):
    assert auto.pick_attention("auto", platform, dtype) == want
    assert auto.pick_attention("dpa", platform, dtype) == "dpa"  # an explicit choice is kept


def test_bad_choices_are_named():
    with pytest.raises(ConfigError, match=r"config.attention='flash'; allowed: auto, xla, dpa, cudnn, chunked"):
        auto.pick_attention("flash", "cpu", "float32")
    with pytest.raises(ConfigError, match=r"config.remat='some'; allowed: auto, none, dots, full"):
        auto.pick_remat("some", "gpu", None, 1)


def test_auto_remat_follows_the_planner():
    peaks = {"none": 100, "dots": 60, "full": 30}
    assert auto.pick_remat("auto", "gpu", peaks.get, 120) == "none"
    assert auto.pick_remat("auto", "gpu", peaks.get, 80) == "dots"
    assert auto.pick_remat("auto", "tpu", peaks.get, 40) == "full"
    assert auto.pick_remat("auto", "cpu", peaks.get, 80) == "dots"  # CPU memory counts the same way
    assert auto.pick_remat("auto", "gpu", peaks.get, None) == "dots"  # memory unknown: the safe middle
    assert auto.pick_remat("auto", "cpu", peaks.get, None) == "none"


def test_device_names_map_to_platforms():
    assert [auto.platform_of_devices(n) for n in ("v5e-8", "v4-8", "h100x8", "a100_40g", "cpux8")] == \
        ["tpu", "tpu", "gpu", "gpu", "cpu"]


def _study_config(name):
    from jaxft.train.config import load_config_file

    return load_config_file(os.path.join(REPO, "configs", name))


def test_planner_counts_the_attention_auto_picks():
    """Qwen2.5-0.5B LoRA at seq 2048 on an H100: auto picks cuDNN flash (no scores in the activations)
    and the planner's activations drop by exactly the explicit path's scores term."""
    from jaxft.plan import plan
    from jaxft.train import memory as mem

    c = _study_config("qwen25_05b_lora.py")
    c.data.seq_len, c.micro_batch_size, c.remat = 2048, 8, "none"
    hw = mem.parse_devices("h100x8")
    p_auto = plan(c, hw)
    c.attention = "xla"
    p_xla = plan(c, hw)
    assert p_auto["attention"] == "cudnn" and p_xla["attention"] == "xla"
    assert any("attention=auto -> cudnn" in line for line in p_auto["auto"])
    from jaxft.run_setup import model_config

    cfg = model_config(c)
    scores = cfg.num_hidden_layers * 8 * 2048 * cfg.num_attention_heads * 2048 * (4 + 2)
    assert p_xla["terms"]["activations"] - p_auto["terms"]["activations"] == scores


def test_planner_resolves_remat_auto_per_device():
    """Gemma-2B Full FT at seq 2048, micro-batch 8: too big for one 80 GB GPU without remat, so auto
    does not pick "none" there, and picks "none" where 8 x 141 GB with fsdp make room."""
    from jaxft.plan import plan
    from jaxft.train import memory as mem

    c = _study_config("gemma2b_full.py")
    c.data.seq_len, c.remat, c.attention = 2048, "auto", "auto"
    c.global_batch_size, c.micro_batch_size, c.mesh_shape.data, c.mesh_shape.fsdp = 8, 8, 1, 1
    one = plan(c, mem.parse_devices("h100x1"))
    assert one["remat"] in ("dots", "full")
    assert one["by_remat"]["none"]["peak"] > one["usable_bytes"]
    small = _study_config("smollm2_135m_lora.py")
    small.remat = "auto"
    assert plan(small, mem.parse_devices("h200x1"))["remat"] == "none"
    assert plan(small, mem.parse_devices("cpu"))["attention"] == "xla"


def test_cgroup_room_counts_active_and_inactive_file_cache_as_free(tmp_path):
    """A cgroup that has read large files sits near its limit on page cache the kernel drops on demand;
    counting only inactive_file once refused a 56 MiB run with GiB of cache to spare (CI, stop 33)."""
    from jaxft.train.memory import _cgroup_room

    MiB = 2 ** 20
    (tmp_path / "memory.max").write_text(f"{4096 * MiB}\n")
    (tmp_path / "memory.current").write_text(f"{4000 * MiB}\n")
    (tmp_path / "memory.stat").write_text(
        f"anon {1000 * MiB}\nfile {3000 * MiB}\nactive_file {2000 * MiB}\ninactive_file {900 * MiB}\n"
        f"shmem {100 * MiB}\n")
    assert _cgroup_room(str(tmp_path)) == (4096 - (4000 - 2900)) * MiB
    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit, and no v1 files: no figure
    assert _cgroup_room(str(tmp_path)) is None
    v1 = tmp_path / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text(f"{2048 * MiB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2000 * MiB}\n")
    (v1 / "memory.stat").write_text(f"cache {1500 * MiB}\ntotal_active_file {1000 * MiB}\n"
                                    f"total_inactive_file {400 * MiB}\n")
    assert _cgroup_room(str(tmp_path)) == (2048 - 600) * MiB
