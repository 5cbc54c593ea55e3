"""moto's S3 API server that survives SIGKILL: the tests' stand-in for an object store (see conftest.S3Server).

    python tests/moto_s3.py --port PORT --recording FILE

moto keeps its objects in memory. With its recorder on, every request is appended to FILE
before it is handled (a write-ahead log), so a server killed at any moment has logged at least
everything it acknowledged. Started again with the same FILE, this script replays the logged
writes into the new server *before* it listens on PORT: no client can see it half restored, the
way a real object store comes back from an outage with everything it had.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--recording", required=True)
    args = p.parse_args()
    os.environ.update(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=args.recording, MOTO_PORT=str(args.port))

    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple
    from werkzeug.test import Client

    app = DomainDispatcherApplication(create_backend_app)
    if os.path.exists(args.recording):
        with open(args.recording) as f:
            writes = [e for e in map(json.loads, f) if e.get("method") in ("PUT", "POST", "DELETE")]
        recorder.stop_recording()  # replaying is not new history
        client = Client(app)
        for e in writes:
            body = base64.b64decode(e["body"]) if e.get("body_encoded") else (e.get("body") or "").encode()
            headers = {k: v for k, v in e["headers"].items() if k.lower() != "transfer-encoding"}
            resp = client.open(e["url"], method=e["method"], headers=headers, data=body)
            resp.close()
        recorder.start_recording()
        print(f"moto_s3: replayed {len(writes)} write(s) from {args.recording}", file=sys.stderr, flush=True)
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
