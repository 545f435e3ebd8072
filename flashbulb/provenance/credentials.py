"""C2PA content credentials, with the C2PA project's own library (`c2pa-python`): a manifest signed
into every image flashbulb returns, and the report of one read back.

Measured (bench/provenance.py): signing adds a few milliseconds to a PNG's encode once the
automatic thumbnail is off (it cost ~130 ms and 130 KB a PNG, and grew a 31 KB WebP to 770 KB).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import threading

import numpy as np
from PIL import Image

import flashbulb
from flashbulb.provenance.identity import SigningIdentity

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# IPTC digital source types: made by a model from a prompt, or a photo changed by one.
GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
EDITED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
# validation_state values that mean the signature and the hard binding hold ("Trusted" adds a known signer).
VALID_STATES = ("Valid", "Trusted")
SOFT_BINDING = "io.flashbulb.rivagan.32"  # the watermark's name in the manifest's soft-binding assertion


@dataclasses.dataclass(frozen=True)
class Facts:
    """What a manifest says about one image: the model, what it did, from which inputs."""

    model: str
    input_sha256: tuple[str, ...] = ()  # of each input image's pixels (its ingredients: hashes, never pixels)
    edits: tuple[str, ...] = ()  # the photo engine's operations, in order ("restore", "background", ...)
    watermark: int | None = None  # the payload the pixels carry (provenance/watermark.py), if marked


def pixels_sha256(image: Image.Image) -> str:
    """A hash of what an image shows (its size, mode and pixels), whatever file it came in."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(np.ascontiguousarray(np.asarray(image)).tobytes())
    return digest.hexdigest()


def manifest(facts: Facts) -> dict:
    agent = {"name": "flashbulb", "version": flashbulb.__version__}
    ingredients = [
        {
            "title": f"input image {i + 1}",
            "format": "image/png",
            "relationship": "parentOf" if i == 0 else "componentOf",
            "label": f"input-{i + 1}",
            "instance_id": f"sha256:{digest}",
            "metadata": {"pixels_sha256": digest},
        }
        for i, digest in enumerate(facts.input_sha256)
    ]
    if ingredients:  # an edit: the first input opened, then each change the model made to it
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["input-1"]}}]
        actions += [
            {
                "action": "c2pa.edited",
                "digitalSourceType": EDITED,
                "softwareAgent": agent,
                "parameters": {"description": edit, "model": facts.model},
            }
            for edit in facts.edits or ("edited",)
        ]
    else:
        actions = [
            {
                "action": "c2pa.created",
                "digitalSourceType": GENERATED,
                "softwareAgent": agent,
                "parameters": {"model": facts.model},
            }
        ]
    assertions: list[dict] = []
    if facts.watermark is not None:  # C2PA's soft binding: the mark that finds this manifest again once it is stripped
        actions.append(
            {
                "action": "c2pa.watermarked",
                "softwareAgent": agent,
                "parameters": {"description": "RivaGAN invisible watermark (flashbulb verify reads it)"},
            }
        )
        value = base64.b64encode(facts.watermark.to_bytes(4, "big")).decode()
        assertions.append(
            {"label": "c2pa.soft-binding", "data": {"alg": SOFT_BINDING, "blocks": [{"scope": {}, "value": value}]}}
        )
    return {
        "claim_generator_info": [agent],
        "title": "flashbulb image",
        "ingredients": ingredients,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}, *assertions],
    }


class Signer:
    """Signs encoded images with one identity; safe to share between threads."""

    def __init__(self, identity: SigningIdentity):
        import c2pa

        self.identity = identity
        self._signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.key_pem, None)
        )
        # Not verified again after signing (c2pa-rs does by default): that re-read was 2.8 of a
        # signature's 4.2 ms on a 32 px PNG, the largest cost of a call in bench/server_overhead.py;
        # what is signed is checked with c2pa.Reader by the tests instead.
        settings = {"builder": {"thumbnail": {"enabled": False}}, "verify": {"verify_after_sign": False}}
        self._context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
        self._lock = threading.Lock()  # one Signer is one native handle

    def sign(self, data: bytes, fmt: str, facts: Facts) -> bytes:
        import c2pa

        signed = io.BytesIO()
        builder = c2pa.Builder(manifest(facts), self._context)
        with self._lock:
            builder.sign(self._signer, MIME[fmt], io.BytesIO(data), signed)
        return signed.getvalue()


def read(data: bytes, mime: str, trust_anchor_pem: bytes = b"") -> dict | None:
    """The active manifest's report, or None when the image carries no content credentials."""
    import c2pa

    settings: dict = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchor_pem:
        settings["trust"] = {"trust_anchors": trust_anchor_pem.decode()}
    context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
    except c2pa.C2paError as exc:  # a manifest that is there but can't be parsed
        return {"valid": False, "trusted": False, "error": str(exc)}
    if reader is None:
        return None
    with reader:
        store = json.loads(reader.json())
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = store.get("validation_results", {}).get("activeManifest", {})
    actions = [
        a
        for assertion in active.get("assertions", [])
        if assertion.get("label", "").startswith("c2pa.actions")
        for a in assertion.get("data", {}).get("actions", [])
    ]
    generator = active.get("claim_generator_info", [{}])[0]
    signature = active.get("signature_info", {})
    return {
        "valid": store.get("validation_state") in VALID_STATES,
        "trusted": store.get("validation_state") == "Trusted",
        "validation_state": store.get("validation_state"),
        "claim_generator": " ".join(str(generator[k]) for k in ("name", "version") if k in generator),
        "actions": [{k: a[k] for k in ("action", "digitalSourceType", "parameters") if k in a} for a in actions],
        "ingredients": [
            {"title": i.get("title"), "relationship": i.get("relationship"), "instance_id": i.get("instance_id")}
            for i in active.get("ingredients", [])
        ],
        "signer": {
            "issuer": signature.get("issuer"),
            "common_name": signature.get("common_name"),
            "self_signed": signature.get("issuer") == "flashbulb (self-signed)",
        },
        "failures": [f["code"] for f in results.get("failure", [])],
    }
