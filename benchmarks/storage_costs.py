"""What a generation costs to send through object storage: bytes, upload and download seconds,
against plain copying of the same directory (shutil.copytree), measured in the same run.

    python -m benchmarks.storage_costs [--generation DIR] [--repeats 5] [--json benchmarks/results/storage_costs.json]

The generation is one as `flows.train --storage` publishes it: a tiny Pacemaker fit on 30 Cu-I DFT
structures (potential .yaml/.yace, active set, logs, artifact.json) evaluated on its test split
(report/: evaluation JSON and PNG plots), or the directory --generation names. Each repeat uploads
it (`ObjectStore.put_tree`: every file hashed and sent as an object, then the manifest) to a fresh
location, downloads it (`get_tree`: every file fetched and verified) into a fresh directory, and
copies it with shutil.copytree; for S3 (moto's server on 127.0.0.1, the same one the tests use) and
for file://. Loopback: no network cost is in these figures, only the client's and server's work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from mlip_autopipec.storage import ObjectStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Cu-I.extxyz"


def tiny_generation(work: Path) -> Path:
    """A real generation directory: a 10-function ACE fit on 30 Cu-I structures, evaluated with plots."""
    from mlip_autopipec.backends.pacemaker import PacemakerTrainer
    from mlip_autopipec.config.training import PacemakerConfig
    from mlip_autopipec.data.export import ExportItem, export_dataset
    from mlip_autopipec.data.frames import LabelledFrame
    from mlip_autopipec.data.readers import read_labelled_frames
    from mlip_autopipec.validation.evaluation import evaluate_on_split

    frames = [frame for _, frame in read_labelled_frames(DEFAULT_DATA) if isinstance(frame, LabelledFrame)][:30]
    manifest = export_dataset([ExportItem(frame=frame, group=f"frame-{index}") for index, frame in enumerate(frames)],
                              work / "dataset", test_fraction=0.2, seed=0, formats=["pacemaker", "extxyz"])
    config = PacemakerConfig(number_of_functions_per_element=10, nradmax_by_orders=[5, 2, 1],
                             lmax_by_orders=[0, 2, 1], maxiter=25, display_step=5)
    artifact = PacemakerTrainer().train(manifest, config, work / "generations" / "gen-000")
    evaluate_on_split(artifact, manifest)
    return Path(artifact.generation_dir)


@contextmanager
def moto_server():
    """moto's S3 server on a free loopback port; its endpoint and dummy credentials in os.environ."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measure(generation: Path, url: str, work: Path) -> dict:
    store = ObjectStore(url)
    upload_s, tree = timed(lambda: store.put_tree(generation))
    download_s, _ = timed(lambda: store.get_tree(tree.digest, work / "downloaded"))
    copy_s, _ = timed(lambda: shutil.copytree(generation, work / "copied"))
    files = store.tree_files(tree.digest)
    return {"upload_s": upload_s, "download_s": download_s, "copytree_s": copy_s, "files": len(files),
            "bytes": sum(entry["size"] for entry in files.values()) + tree.size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generation", type=Path, help="a generation directory (default: fit a tiny one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="storage-costs-") as tmp:
        work = Path(tmp)
        generation = args.generation or tiny_generation(work / "fit")
        results: dict[str, list[dict]] = {"s3": [], "file": []}
        with moto_server() as endpoint:
            for repeat in range(args.repeats):
                bucket = f"bench-{repeat}"
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).close()
                results["s3"].append(measure(generation, f"s3://{bucket}/mlip", work / f"s3-{repeat}"))
                results["file"].append(measure(generation, (work / f"store-{repeat}").as_uri(),
                                               work / f"file-{repeat}"))
    summary = {}
    for kind, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        median["upload_ratio"] = median["upload_s"] / median["copytree_s"]
        median["download_ratio"] = median["download_s"] / median["copytree_s"]
        summary[kind] = median
        print(f"{kind}: {median['files']:.0f} files, {median['bytes'] / 1e6:.3f} MB per generation; "
              f"upload {median['upload_s']:.3f} s, download {median['download_s']:.3f} s, "
              f"copytree {median['copytree_s'] * 1e3:.1f} ms (medians of {len(runs)}); "
              f"ratio upload {median['upload_ratio']:.0f}x, download {median['download_ratio']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "medians": summary, "load_average": os.getloadavg()},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
