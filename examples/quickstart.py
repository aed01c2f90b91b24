# %% [markdown]
# # cttv2 from Python
# Submit a job, follow it, look at its metrics and fetch its weights. Run it cell by cell in
# Jupyter or VS Code (each `# %%` is a cell), or as a script: `python examples/quickstart.py`.
# It connects with $CTTV2_URL / $CTTV2_TOKEN, else the config `cttv2 login` saved.

# %%
import os
import tempfile

from cttv2_client import Client, JobFailed

client = Client()
print(client, client.version())

# %% [markdown]
# A small job that trains in seconds on a CPU: c-TTv2 on the last stage of a tiny Swin,
# three digit classes. The study's real job is examples/study-job.yaml.

# %%
spec = {
    "name": "quickstart",
    "algorithm": "c-ttv2",
    "device": {"family": "SoftBoundsReference", "dw_min": 0.01},
    "model": {"arch": "swin_micro", "analog_scope": "last_stage", "digital_parts": "trained"},
    "data": {"dataset": "digits", "classes": [0, 1, 2], "train_per_class": 30, "test_per_class": 10},
    "training": {"epochs": 2, "batch_size": 16, "seed": 0},
}
job = client.jobs.submit(spec)
print(f"submitted job {job.id}")

# %% wait: a progress bar in a terminal or notebook; JobFailed / JobCancelled if it does not succeed
try:
    job = client.jobs.wait(job.id, timeout=1800)
except JobFailed as exc:
    raise SystemExit(f"the job failed: {exc.job.error.message}") from None
print(f"test accuracy {100 * job.result.test_accuracy:.1f}% in {job.result.wall_s:.0f} s")

# %% metrics: a DataFrame with pandas (pip install 'cttv2-client[pandas]'), else plain series
metrics = client.jobs.metrics(job.id)
try:
    print(metrics.to_pandas())
except ImportError:
    for key in metrics.keys:
        print(key, metrics.series(key))

# %% artifacts: the trained weights, resumable download checked against the server's sha256
for artifact in client.artifacts.list(job.id):
    print(f"{artifact.name:28} {artifact.size:>10} bytes")
out_dir = os.environ.get("QUICKSTART_OUT") or tempfile.mkdtemp(prefix="cttv2-")
path = client.artifacts.download(job.id, "weights.safetensors", f"{out_dir}/")
print(f"weights saved to {path}")

# %% the same job again, as a digital baseline: compare
baseline = client.jobs.wait(client.jobs.submit(spec, overrides={"algorithm": "fp", "name": "quickstart-fp"}).id)
print(f"c-TTv2 {100 * job.result.test_accuracy:.1f}% vs digital {100 * baseline.result.test_accuracy:.1f}%")
