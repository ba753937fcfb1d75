"""The Python peer of tests/hub_push.rs: `huggingface_hub.create_repo` + `upload_folder` of a
folder to a repo on the Hub at HF_ENDPOINT (the stand-in), with the token in HF_TOKEN.
Run with HF_HUB_DISABLE_XET=1 (the stand-in has no Xet storage).

Usage: hub_upload.py FOLDER OWNER/NAME [--private]; prints the commit as JSON.
"""

import json
import os
import sys

from huggingface_hub import HfApi

folder, repo = sys.argv[1], sys.argv[2]
api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=os.environ["HF_TOKEN"])
api.create_repo(repo, private="--private" in sys.argv[3:], exist_ok=True)
info = api.upload_folder(folder_path=folder, repo_id=repo, commit_message="huggingface_hub upload")
print(json.dumps({"oid": info.oid, "url": info.commit_url}))
