"""launch/*.sh --dry-run prints the exact commands; missing or bad arguments fail with a message."""

import os
import shlex
import subprocess

import pytest

from conftest import REPO

CFG = "configs/gemma2b_full.py"
TRAIN = f"python3 -m jaxft.train --config={CFG} --workdir=/shared/runs/g"


def launch(script, *args):
    return subprocess.run(["bash", os.path.join(REPO, "launch", script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def dry_run(script, *args):
    proc = launch(script, "--dry-run", *args)  # before any `--`, after which flags go to the trainer
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_tpu_pod_runs_one_command_on_every_worker():
    assert dry_run("tpu_pod.sh", "--tpu-name=ft", "--zone=us-west4-a", f"--config={CFG}",
                   "--workdir=/shared/runs/g", "--", "--config.mesh_shape.fsdp=16") == [
        "gcloud compute tpus tpu-vm ssh ft --zone=us-west4-a --worker=all "
        f'--command="cd ~/jaxft && JAXFT_DISTRIBUTED=1 {TRAIN} --config.mesh_shape.fsdp=16"']


def test_tpu_pod_create_setup_and_queued_resources():
    out = dry_run("tpu_pod.sh", "--tpu-name=ft", "--zone=us-west4-a", f"--config={CFG}", "--workdir=/shared/runs/g",
                  "--create", "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite", "--project=p1",
                  "--setup")
    assert out == [
        "gcloud compute tpus tpu-vm create ft --zone=us-west4-a --project=p1 --accelerator-type=v5litepod-16 "
        "--version=v2-alpha-tpuv5-lite",
        f"git -C {REPO} archive --format=tar.gz -o /tmp/jaxft-ft.tar.gz HEAD",
        "gcloud compute tpus tpu-vm scp /tmp/jaxft-ft.tar.gz ft:jaxft.tar.gz --zone=us-west4-a --project=p1 "
        "--worker=all",
        "gcloud compute tpus tpu-vm ssh ft --zone=us-west4-a --project=p1 --worker=all --command=\"mkdir -p ~/jaxft "
        "&& tar -xzf jaxft.tar.gz -C ~/jaxft && python3 -m pip install -q -U 'jax[tpu]' -e ~/jaxft\"",
        "gcloud compute tpus tpu-vm ssh ft --zone=us-west4-a --project=p1 --worker=all "
        f'--command="cd ~/jaxft && JAXFT_DISTRIBUTED=1 {TRAIN}"']
    out = dry_run("tpu_pod.sh", "--tpu-name=ft", "--zone=z", f"--config={CFG}", "--workdir=/shared/runs/g",
                  "--queued", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot")
    assert out[0] == ("gcloud compute tpus queued-resources create ft --node-id=ft --zone=z --accelerator-type=v4-32 "
                      "--runtime-version=tpu-ubuntu2204-base --spot")
    assert out[1] == ('# repeat until it prints ACTIVE: gcloud compute tpus queued-resources describe ft --zone=z '
                      '--format="value(state.state)"')
    assert "--worker=all" in out[2] and TRAIN in out[2]


def test_printed_commands_survive_the_shell():
    """Train flags with spaces and quotes reach python intact through both levels of quoting."""
    odd = ["--config.peft.targets=q_proj,v proj", "--config.tokenizer=it's", "--config.model=$HOME"]
    line = dry_run("tpu_pod.sh", "--tpu-name=ft", "--zone=z", f"--config={CFG}", "--workdir=/w", "--", *odd)[-1]
    words = shlex.split(line)
    assert words[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "ft"]
    remote = words[-1].removeprefix("--command=")
    assert shlex.split(remote) == ["cd", "~/jaxft", "&&", "JAXFT_DISTRIBUTED=1", "python3", "-m", "jaxft.train",
                                   f"--config={CFG}", "--workdir=/w", *odd]


def test_xpk_workload():
    common = ["--cluster=c1", "--workload=ft-1", "--tpu-type=v5litepod-16", f"--config={CFG}",
              "--workdir=/shared/runs/g"]
    assert dry_run("xpk_gke.sh", *common, "--docker-image=gcr.io/p/jaxft:1", "--num-slices=2", "--zone=z") == [
        "xpk workload create --cluster=c1 --workload=ft-1 --tpu-type=v5litepod-16 --num-slices=2 --zone=z "
        f'--docker-image=gcr.io/p/jaxft:1 --command="JAXFT_DISTRIBUTED=1 {TRAIN}"']
    assert dry_run("xpk_gke.sh", *common, "--base-docker-image=img:1") == [
        "xpk workload create --cluster=c1 --workload=ft-1 --tpu-type=v5litepod-16 --num-slices=1 "
        f'--base-docker-image=img:1 --script-dir={REPO} '
        f'--command="python3 -m pip install -q -e . && JAXFT_DISTRIBUTED=1 {TRAIN}"']


def test_slurm_per_gpu_and_per_node():
    srun = ("srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 --kill-on-bad-exit=1 env JAXFT_DISTRIBUTED=1 "
            f"{TRAIN}")
    assert dry_run("slurm.sh", f"--config={CFG}", "--workdir=/shared/runs/g", "--nodes=2", "--partition=gpu",
                   "--time=04:00:00") == [
        "mkdir -p /shared/runs/g",
        "sbatch --job-name=jaxft --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 "
        f'--output=/shared/runs/g/slurm-%j.out --partition=gpu --time=04:00:00 --wrap="{srun}"']
    assert dry_run("slurm.sh", f"--config={CFG}", "--workdir=/shared/runs/g", "--nodes=2", "--srun") == [srun]
    assert dry_run("slurm.sh", f"--config={CFG}", "--workdir=/shared/runs/g", "--nodes=3", "--gpus-per-node=4",
                   "--mode=per-node", "--srun", "--", "--config.total_steps=10") == [
        "srun --nodes=3 --ntasks-per-node=1 --gpus-per-node=4 --kill-on-bad-exit=1 env JAXFT_DISTRIBUTED=1 "
        f"JAX_LOCAL_DEVICE_IDS=0,1,2,3 {TRAIN} --config.total_steps=10"]


def test_single_host():
    assert dry_run("single_host.sh", f"--config={CFG}", "--workdir=/shared/runs/g") == [TRAIN]
    assert dry_run("single_host.sh", f"--config={CFG}", "--workdir=/shared/runs/g", "--gpus=0,1,2,3", "--",
                   "--config.mesh_shape.fsdp=4") == [
        f"env CUDA_VISIBLE_DEVICES=0,1,2,3 {TRAIN} --config.mesh_shape.fsdp=4"]


@pytest.mark.parametrize("script,args,message", [
    ("tpu_pod.sh", ["--zone=z", f"--config={CFG}", "--workdir=w"], "missing --tpu-name"),
    ("tpu_pod.sh", ["--tpu-name=t", f"--config={CFG}", "--workdir=w"], "missing --zone"),
    ("tpu_pod.sh", ["--tpu-name=t", "--zone=z", "--workdir=w"], "missing --config"),
    ("tpu_pod.sh", ["--tpu-name=t", "--zone=z", f"--config={CFG}"], "missing --workdir"),
    ("tpu_pod.sh", ["--tpu-name=t", "--zone=z", f"--config={CFG}", "--workdir=w", "--create", "--version=v"],
     "missing --accelerator-type"),
    ("tpu_pod.sh", ["--tpu-name=t", "--zone=z", "--config=configs/nope.py", "--workdir=w"], "not found"),
    ("tpu_pod.sh", ["--tpu-name", "t"], "unknown argument '--tpu-name'"),
    ("xpk_gke.sh", ["--workload=w", "--tpu-type=v4-8", f"--config={CFG}", "--workdir=w", "--docker-image=i"],
     "missing --cluster"),
    ("xpk_gke.sh", ["--cluster=c", "--workload=w", "--tpu-type=v4-8", f"--config={CFG}", "--workdir=w"],
     "exactly one of --docker-image and --base-docker-image"),
    ("xpk_gke.sh", ["--cluster=c", "--workload=My_Job", "--tpu-type=v4-8", f"--config={CFG}", "--workdir=w",
                    "--docker-image=i"], "lowercase"),
    ("slurm.sh", [f"--config={CFG}", "--workdir=w"], "missing --nodes"),
    ("slurm.sh", [f"--config={CFG}", "--workdir=w", "--nodes=two"], "expected a positive integer"),
    ("slurm.sh", [f"--config={CFG}", "--workdir=w", "--nodes=2", "--mode=per-core"], "per-gpu or per-node"),
    ("single_host.sh", ["--workdir=w"], "missing --config"),
    ("single_host.sh", [f"--config={CFG}"], "missing --workdir"),
    ("single_host.sh", [f"--config={CFG}", "--workdir=w", "--gpus=all"], "expected a list"),
])
def test_bad_arguments_fail_with_a_message(script, args, message):
    proc = launch(script, "--dry-run", *args)
    assert proc.returncode == 2 and message in proc.stderr and not proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("script", ["tpu_pod.sh", "xpk_gke.sh", "slurm.sh", "single_host.sh"])
def test_help(script):
    proc = launch(script, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: launch/{script}")


@pytest.mark.parametrize("script,args", [
    ("tpu_pod.sh", ["--tpu-name=ft", "--zone=z"]),
    ("xpk_gke.sh", ["--cluster=c", "--workload=w", "--tpu-type=v4-8", "--docker-image=i"]),
    ("slurm.sh", ["--nodes=2"]),
    ("single_host.sh", []),
])
def test_config_with_an_argument_reaches_the_trainer(script, args):
    """`--config=configs/experiment.py:MODEL,METHOD` (the file exists, the text after ':' is get_config's)."""
    spec = "configs/experiment.py:gemma-2b,full"
    out = "\n".join(dry_run(script, *args, f"--config={spec}", "--workdir=/w"))
    assert f"-m jaxft.train --config={spec} --workdir=/w" in out
