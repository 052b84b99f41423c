"""Make docs/mlflow.png: the MLflow UI over a real run's store, captured with the system Chromium through Playwright.

    cd WORKSPACE && autoresearch run --tag demo --max-experiments 6 --track mlflow
    python docs/mlflow_screenshot.py WORKSPACE [--out docs/mlflow.png]

It starts `mlflow ui` on 127.0.0.1 over WORKSPACE/.autoresearch/mlflow.db, opens the research run's experiment
in the chart view with its child runs listed (the training curves, best_val_bpb, each figure), and stops the
server again. Nothing leaves the machine: the page's requests to anything
but that server are refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("mlflow.png"))
    ap.add_argument("--experiment", default=None, help="MLflow experiment (default: autoresearch/<workspace>)")
    ap.add_argument("--tag", default="demo", help="the run's tag (its parent run's name)")
    args = ap.parse_args()
    ws = args.workspace.resolve()
    store = ws / ".autoresearch" / "mlflow.db"
    if not store.exists():
        sys.exit(f"no MLflow store at {store}: run `autoresearch run --track mlflow` there first")
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    uri = f"sqlite:///{store}"
    name = args.experiment or f"autoresearch/{ws.name}"
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    if experiment is None:
        sys.exit(f"no MLflow experiment {name!r} in {store}")
    port = free_port()
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    server = subprocess.Popen([mlflow, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ws / ".autoresearch")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("mlflow ui did not start")
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("AUTORESEARCH_CHROMIUM") or "/usr/bin/chromium",
                                        headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1250}, device_scale_factor=1)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                       else route.abort())
            page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs", timeout=60_000)
            name = page.get_by_text(args.tag, exact=True).first  # the research run's row
            name.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            close = page.get_by_role("button", name="Close")  # the assistant's side panel
            if close.count():
                close.last.click()
                page.wait_for_timeout(1000)
            box = name.bounding_box()
            for dx in range(10, 80, 6):  # its expander, a small icon left of the name: the child runs
                page.mouse.click(box["x"] - dx, box["y"] + box["height"] / 2)
                page.wait_for_timeout(700)
                if page.get_by_text("#1 baseline").count():
                    break
            page.mouse.click(296, 120)  # the chart view: the second of the view toggles (MLflow 3.17's layout)
            page.wait_for_timeout(6000)
            page.screenshot(path=str(args.out))
            browser.close()
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
