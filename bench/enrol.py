"""Enrolment speed: one person from three recordings, as ``ecg-pipeline enrol`` does it.

Times :func:`ecg_pipeline.predict.enrol.enrol_person` end to end (hash and read each file,
filter, resample, cut and check windows, run the backbone, average, write ``templates.json``
atomically), the model already loaded, as the command does after its imports. The target
(issue 14): under 2 s for three recordings.

By default it writes three demo ``.acq`` recordings of [demo] duration_s (3 minutes, the
lab's protocol) and a DT4ECG checkpoint with untrained weights for the demo configuration
(the time does not depend on what the weights learnt); ``--model FOLD_DIR --config TOML
FILE FILE FILE`` times a real model on real recordings instead (ECG-ID records: 20 s).
Each repeat enrols a new name, so nothing is replaced.

Run: ``.venv/bin/python bench/enrol.py [--repeats 5] [--model FOLD_DIR --config TOML FILES...]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def untrained_checkpoint(folder: Path, config) -> Path:
    """A DT4ECG checkpoint for ``config``'s windows, weights as initialised."""
    from ecg_pipeline.training.checkpoint import save_checkpoint
    from ecg_pipeline.training.spec import build_from_spec, model_spec

    classes = {"identity": [f"S{i:02d}" for i in range(1, 16)], "activity": ["a", "b", "c"]}
    heads = {task: len(names) for task, names in classes.items()}
    n = config.ingest.windows.window_samples
    spec = model_spec(config, heads, classes, n, config.ingest.windows.target_fs_hz)
    save_checkpoint(folder, build_from_spec(spec, 0), spec)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="three recordings (default: demo)")
    parser.add_argument("--model", type=Path, help="a fold folder (default: untrained DT4ECG)")
    parser.add_argument("--config", type=Path, help="the model's configuration TOML")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from ecg_pipeline.cohort.demo import write_demo_recording
    from ecg_pipeline.config import load_config
    from ecg_pipeline.predict.enrol import enrol_person
    from ecg_pipeline.training.model_handle import load_checkpoint_model

    torch.set_num_threads(1)  # the figure of one core, whatever else the machine runs
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = list(args.files)
        if not files:
            files = [
                write_demo_recording(tmp / "rec", 7, c, duration_s=config.demo.duration_s)
                for c in ("rest", "exercise", "deep_breathing")
            ]
        if args.model is None:
            folder = untrained_checkpoint(tmp / "fold", config)
        else:  # a copy, so the model's own templates.json is never written to
            import shutil

            folder = tmp / "fold"
            for name in ("model.pt", "model.json"):
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(args.model / name, folder / name)
        model = load_checkpoint_model(folder)
        enrol_person("warm-up", files[:1], config, model)  # first-call costs (imports, caches)
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            enrol_person(f"person-{i}", files, config, model)
            times.append(time.perf_counter() - start)
    print(
        f"enrolment of one person from {len(files)} recording(s), {args.repeats} repeats, "
        f"1 torch thread: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"(target < 2 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
