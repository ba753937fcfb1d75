"""A stand-in for the Hugging Face Hub on 127.0.0.1 for tests/hub_push.rs: just enough of the
Hub's HTTP API for `huggingface_hub.create_repo` + `upload_folder` (without Xet) and for
`deepsynth push`. It is not the Hub: upload modes follow a fixed rule, nothing is a git repo.

Endpoints: POST /api/repos/create; POST /api/validate-yaml; POST /api/models/{repo}/preupload/
{rev}; POST /{repo}.git/info/lfs/objects/batch (basic transfer, multipart above
--multipart-above bytes); PUT/POST under /_lfs/ (uploads, parts, completion, verify);
POST /api/models/{repo}/commit/{rev} (NDJSON). Test control (not recorded): GET /_standin/state
(every repo's privacy, files with size, sha256 and LFS flag, commits; every request's method,
path and whether it had an Authorization header; unknown requests; parsed README metadata),
POST /_standin/fail {"path_contains", "status", "times"} (or {"clear": true}).

Usage: hub_standin.py --token TOKEN [--multipart-above BYTES]; prints the port on stdout.
"""

import argparse
import base64
import hashlib
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".parquet",
                ".arrow", ".npy", ".npz", ".pkl", ".zip", ".gz", ".tar", ".zst", ".msgpack")
LOCK = threading.Lock()
STATE = {"repos": {}, "requests": [], "lfs": {}, "parts": {}, "fail": [], "unknown": [],
         "metadata": []}


def upload_mode(path, size, sample):
    """The stand-in's rule (the Hub uses the repo's .gitattributes): LFS for model-file
    suffixes, files over 10 MiB and binary samples."""
    if path.endswith(LFS_SUFFIXES) or size > 10 * 1024 * 1024 or b"\0" in sample:
        return "lfs"
    return "regular"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing --------------------------------------------------------------------------
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, obj=None, headers=None):
        data = json.dumps(obj if obj is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def base(self):
        return f"http://{self.headers.get('Host')}"

    def authorised(self):
        return self.headers.get("Authorization") == f"Bearer {ARGS.token}"

    def handle_any(self, method):
        url = urlsplit(self.path)
        path = url.path
        data = self.body()
        with LOCK:
            if not path.startswith("/_standin/"):
                STATE["requests"].append({"method": method, "path": path,
                                          "auth": self.headers.get("Authorization") is not None})
            for f in STATE["fail"]:
                if f["times"] > 0 and f["path_contains"] in path:
                    f["times"] -= 1
                    return self.reply(f["status"], {"error": "stand-in failure on purpose"})
        try:
            self.route(method, path, url.query, data)
        except Exception as e:  # a bug here should show in the test, not hang it
            self.reply(500, {"error": f"stand-in error: {e!r}"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    # -- the API ---------------------------------------------------------------------------
    def route(self, method, path, query, data):
        parts = path.strip("/").split("/")
        if path == "/_standin/state":
            with LOCK:
                keys = ("repos", "requests", "unknown", "metadata")
                return self.reply(200, {k: STATE[k] for k in keys})
        if path == "/_standin/fail" and method == "POST":
            p = json.loads(data)
            with LOCK:
                if p.get("clear"):
                    STATE["fail"].clear()
                else:
                    STATE["fail"].append(p)
            return self.reply(200)
        if path.startswith("/_lfs/"):
            return self.lfs(method, parts[1:], query, data)
        if path == "/api/agent-harnesses":
            # huggingface_hub's agent detection; it carries on without the registry.
            return self.reply(404, {"error": "the stand-in has no agent-harness registry"})
        if not self.authorised():
            return self.reply(401, {"error": "Invalid credentials in Authorization header"})
        if path == "/api/repos/create" and method == "POST":
            p = json.loads(data)
            repo = f"{p.get('organization')}/{p['name']}"
            private = p.get("visibility") == "private" or p.get("private") is True
            with LOCK:
                if repo in STATE["repos"]:
                    return self.reply(409, {"error": "You already created this model repo",
                                            "url": f"{self.base()}/{repo}"})
                STATE["repos"][repo] = {"private": private, "type": p.get("type", "model"),
                                        "files": {}, "commits": []}
            return self.reply(200, {"url": f"{self.base()}/{repo}"})
        if path == "/api/validate-yaml" and method == "POST":
            return self.validate_yaml(json.loads(data))
        if len(parts) == 6 and parts[:2] == ["api", "models"] and method == "POST":
            repo = f"{parts[2]}/{parts[3]}"
            with LOCK:
                if repo not in STATE["repos"]:
                    return self.reply(404, {"error": "Repository not found"})
            if parts[4] == "preupload":
                files = json.loads(data)["files"]
                return self.reply(200, {"files": [
                    {"path": f["path"], "shouldIgnore": False,
                     "uploadMode": upload_mode(f["path"], f["size"],
                                               base64.b64decode(f["sample"]))}
                    for f in files]})
            if parts[4] == "commit":
                return self.commit(repo, parts[5], data)
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs",
                                                                         "objects", "batch"]:
            repo = f"{parts[0]}/{parts[1][:-4]}"
            return self.batch(repo, json.loads(data))
        with LOCK:
            STATE["unknown"].append(f"{method} {path}")
        return self.reply(404, {"error": f"not implemented by the stand-in: {method} {path}"})

    def validate_yaml(self, p):
        """The README's YAML front matter must parse to a mapping (the Hub checks more);
        what it parsed to is kept for the test."""
        import yaml

        text = p.get("content", "")
        if not text.startswith("---\n") or "\n---\n" not in text[3:]:
            return self.reply(200, {"warnings": [{"message": "empty or missing yaml metadata"}]})
        front = text[4:text.index("\n---\n", 3)]
        try:
            meta = yaml.safe_load(front)
        except yaml.YAMLError as e:
            return self.reply(400, {"errors": [{"message": f"bad YAML: {e}"}]})
        if not isinstance(meta, dict):
            return self.reply(400, {"errors": [{"message": "the metadata is not a mapping"}]})
        with LOCK:
            STATE["metadata"].append(meta)
        return self.reply(200, {"warnings": []})

    def batch(self, repo, p):
        with LOCK:
            if repo not in STATE["repos"]:
                return self.reply(404, {"error": "Repository not found"})
        objects = []
        multipart = False
        for o in p["objects"]:
            oid, size = o["oid"], o["size"]
            sig = secrets.token_hex(8)
            with LOCK:
                have = oid in STATE["lfs"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if not have:
                verify = {"href": f"{self.base()}/_lfs/{oid}/verify"}
                if size > ARGS.multipart_above:
                    multipart = True
                    chunk = ARGS.chunk_size
                    header = {"chunk_size": str(chunk)}
                    for i in range((size + chunk - 1) // chunk):
                        header[str(i + 1)] = f"{self.base()}/_lfs/{oid}/part/{i + 1}?sig={sig}"
                    upload = {"href": f"{self.base()}/_lfs/{oid}/complete?sig={sig}",
                              "header": header}
                else:
                    upload = {"href": f"{self.base()}/_lfs/{oid}?sig={sig}"}
                entry["actions"] = {"upload": upload, "verify": verify}
            objects.append(entry)
        self.reply(200, {"transfer": "multipart" if multipart else "basic", "objects": objects},
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs(self, method, parts, query, data):
        oid = parts[0]
        if method == "PUT" and len(parts) == 1 and query.startswith("sig="):
            if hashlib.sha256(data).hexdigest() != oid:
                return self.reply(400, {"error": "sha256 does not match the oid"})
            with LOCK:
                STATE["lfs"][oid] = data
            return self.reply(200)
        if method == "PUT" and len(parts) == 3 and parts[1] == "part":
            with LOCK:
                STATE["parts"].setdefault(oid, {})[int(parts[2])] = data
            return self.reply(200, headers={"ETag": hashlib.md5(data).hexdigest()})
        if method == "POST" and parts[1:] == ["complete"]:
            p = json.loads(data)
            with LOCK:
                stored = STATE["parts"].get(oid, {})
                blob = b"".join(stored[n] for n in sorted(stored))
                etags = [hashlib.md5(stored[n]).hexdigest() for n in sorted(stored)]
            if [x["etag"] for x in p["parts"]] != etags or hashlib.sha256(blob).hexdigest() != oid:
                return self.reply(400, {"error": "parts do not make up the object"})
            with LOCK:
                STATE["lfs"][oid] = blob
            return self.reply(200)
        if method == "POST" and parts[1:] == ["verify"]:
            if not self.authorised():
                return self.reply(401, {"error": "Invalid credentials"})
            p = json.loads(data)
            with LOCK:
                ok = len(STATE["lfs"].get(p["oid"], b"")) == p["size"] and p["oid"] in STATE["lfs"]
            return self.reply(200 if ok else 404)
        return self.reply(404, {"error": "unknown LFS request"})

    def commit(self, repo, rev, data):
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return self.reply(400, {"error": "the first line must be the header"})
        files = {}
        for line in lines[1:]:
            v = line["value"]
            if line["key"] == "file":
                blob = base64.b64decode(v["content"])
                lfs = False
            elif line["key"] == "lfsFile":
                with LOCK:
                    blob = STATE["lfs"].get(v["oid"])
                if blob is None or len(blob) != v["size"]:
                    return self.reply(400, {"error": f"LFS object {v['oid']} was not uploaded"})
                lfs = True
            else:
                return self.reply(400, {"error": f"unsupported commit line {line['key']}"})
            files[v["path"]] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                                "lfs": lfs}
        oid = secrets.token_hex(20)
        with LOCK:
            r = STATE["repos"][repo]
            r["files"].update(files)
            r["commits"].append({"oid": oid, "revision": rev,
                                 "summary": lines[0]["value"]["summary"],
                                 "paths": sorted(files)})
        self.reply(200, {"success": True, "commitOid": oid,
                         "commitUrl": f"{self.base()}/{repo}/commit/{oid}"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client closing its kept-alive connection is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--multipart-above", type=int, default=1 << 62)
    ap.add_argument("--chunk-size", type=int, default=64 * 1024)
    ARGS = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
