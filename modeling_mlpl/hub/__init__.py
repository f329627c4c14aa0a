"""Publishing recipe stages to the Hugging Face Hub: the exact upload folder, then a resilient push.

Layout: one model repo with one branch per stage (``stage1-multilingual``, ``stage2-ft-<lang>``,
``stage4a-pl``, ``stage4b-pl``; or one repo per stage with ``layout="repo"``), pseudo-label sets as
dataset repos. What is uploaded is always first written to a local folder
(:func:`prepare_upload_folder`), so ``--dry_run`` shows byte for byte what a push would send, and a
folder that loads locally with ``trust_remote_code=True`` is the folder that goes up.

Training / pseudo-labeling scripts call :func:`maybe_push_to_hub` after saving (their arguments come
from :func:`add_hub_arguments`).

One module per concern:

- :mod:`.auth`: the token, and retrying transient Hub failures;
- :mod:`.staging`: where a stage goes and the folder that is uploaded;
- :mod:`.cards`: the model card's facts gathered from a checkpoint (rendering: :mod:`modeling_mlpl.hub.model_card`);
- :mod:`.push`: create repo / branch, upload;
- :mod:`.command_line`: the ``--push_to_hub`` flags and hook of train.py / pseudo_label.py.

``resolve_token`` and ``_make_api`` are looked up on this package when a push runs, so substituting
``modeling_mlpl.hub._make_api`` (a fake ``HfApi``) or ``modeling_mlpl.hub.resolve_token`` reaches every
caller; retries sleep through ``time.sleep``, looked up as late.
"""

from __future__ import annotations

import time  # noqa: F401 - `hub.time.sleep` is where tests stop retries from waiting

from .auth import (
    MISSING_TOKEN_MESSAGE,
    TRANSIENT_STATUS,
    HubError,
    call_with_retries,
    is_transient_error,
    resolve_token,
)
from .command_line import add_hub_arguments, maybe_push_to_hub
from .push import LARGE_FOLDER_BYTES, _make_api, publish_stage, push_checkpoint, push_dataset, push_folder
from .staging import (
    AUDIO_PATTERNS,
    CACHE_PATTERNS,
    EXCLUDED_PATTERNS,
    TRAINING_FILE_PATTERNS,
    UploadPlan,
    prepare_dataset_folder,
    prepare_upload_folder,
    stage_target,
)

__all__ = [
    "HubError",
    "MISSING_TOKEN_MESSAGE",
    "UploadPlan",
    "resolve_token",
    "is_transient_error",
    "call_with_retries",
    "stage_target",
    "prepare_upload_folder",
    "prepare_dataset_folder",
    "push_folder",
    "push_checkpoint",
    "push_dataset",
    "publish_stage",
    "add_hub_arguments",
    "maybe_push_to_hub",
]
