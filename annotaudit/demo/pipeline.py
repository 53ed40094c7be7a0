"""`annotaudit demo`: the main job end to end on a CPU, with nothing to download.

Generates the shapes world, builds a small LLaVA-NeXT (a tiny CLIP tower pretrained on the world, a
tiny Llama with a tokenizer trained on the world's words and pretrained on its text), audits it with POPE and CHAIR in English
and Italian, trains both stages, audits it again, lets the trained LVLM and SmolLM2-135M annotate the
world's image+text task, trains MMBT on human and on LLM labels, and writes one report.
Every step calls the library, not the command line, and every step's run directory is kept.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from annotaudit.core.io import iter_jsonl, read_json, write_json
from annotaudit.core.runs import RunDir, console, progress
from annotaudit.core.vocab import LANGUAGES as LANGS
from annotaudit.core.vocab import SETTINGS
from annotaudit.demo import shapes
from annotaudit.demo.report import arm_key, demo_report

SMOLLM2 = "smollm2-135m-instruct"
SECOND_PROCESS_LOG = "second_process.log"
CAPTION_PROMPT = {"en": "Generate a short caption of the image.", "it": "Genera una breve didascalia dell'immagine."}


@dataclass
class DemoConfig:
    """Sizes of the world and of the training; `quick` shrinks everything for CI."""

    n_train: int = 1600
    n_val: int = 100
    n_memes: int = 1200
    image_size: int = 64  # the tower's input; scenes are drawn at twice this
    tower_hidden: int = 64
    patch_size: int = 16
    llm_hidden: int = 128
    llm_layers: int = 4
    tower_scenes: int = 6000
    tower_steps: int = 6000
    llm_pretrain_steps: int = 600
    pretrain_epochs: int = 1
    finetune_epochs: int = 5
    batch_size: int = 8
    lr_pretrain: float = 1e-3
    lr_finetune: float = 1e-3
    pope_images: int = 100
    chair_images: int = 50
    resnet_steps: int = 3000
    bert_hidden: int = 64
    matching_epochs: int = 12
    mmbt_epochs: int = 20
    lr_mmbt: float = 3e-4  # every arm; the matched BERT is fine-tuned, not trained afresh
    annotate_smollm2: bool = True
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(n_train=600, n_val=12, n_memes=300, tower_scenes=1500, tower_steps=40, llm_pretrain_steps=10, finetune_epochs=1, pope_images=6,
                   chair_images=4, resnet_steps=1500, matching_epochs=8, mmbt_epochs=20)


# models --------------------------------------------------------------------------------------


def world_tokenizer(world: shapes.World):
    """A BPE tokenizer trained on every sentence of the world (both languages) and the prompts."""
    from annotaudit.testing.tiny_models import CORPUS, train_tokenizer

    texts = [CORPUS]
    for lang in LANGS:
        for rec in read_json(world.instruct[lang]):
            texts += [t["value"] for t in rec["conversations"]]
        texts += [t["value"] for rec in read_json(world.pretrain[lang]) for t in rec["conversations"]]
    texts += [rec["text"] for _, rec in iter_jsonl(world.memes / "train.jsonl")]
    texts += [shapes.STATEMENT_PROMPT, "[INST] [/INST]"]
    return train_tokenizer(texts, vocab_size=1000)


def _presence_data(cfg: DemoConfig, processor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and presence labels of scenes drawn for one encoder alone (a seed of its own, never written to disk)."""
    rng = random.Random(f"{name}-{cfg.seed}")
    scenes = [shapes.sample_scene(rng, i, 2 * cfg.image_size) for i in range(cfg.tower_scenes)]
    pixels = torch.cat([processor([shapes.render(sc, 2 * cfg.image_size) for sc in scenes[i : i + 256]], return_tensors="pt")["pixel_values"]
                        for i in range(0, len(scenes), 256)])
    targets = torch.tensor([[float(n in sc.categories()) for n in shapes.NAMES] for sc in scenes])
    return pixels, targets


def pretrain_presence(encoder: torch.nn.Module, features, dim: int, processor, cfg: DemoConfig, steps: int, name: str) -> float:
    """Teach an image encoder which objects a picture holds (multi-label, mirrored scenes as augmentation); returns the last loss.

    A real LLaVA starts from a pretrained CLIP and a real MMBT from an ImageNet ResNet; a random encoder
    gives the layers above it nothing to read."""
    torch.manual_seed(cfg.seed)
    pixels, targets = _presence_data(cfg, processor, name)
    head = torch.nn.Linear(dim, targets.shape[1])
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    encoder.train()
    with progress(f"{name} pretraining (which objects a picture holds)", steps) as advance:
        for step in range(steps):
            idx = torch.randint(0, len(pixels), (32,), generator=gen)
            x = pixels[idx].flip(-1) if step % 2 else pixels[idx]  # mirrored scenes hold the same objects
            loss = F.binary_cross_entropy_with_logits(head(features(x)), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            advance()
    encoder.eval()
    return round(loss.item(), 4)


def pretrain_tower(out: Path, cfg: DemoConfig) -> Path:
    """A small CLIP-style tower, pretrained on the features LLaVA reads (layer -2, max-pooled over patches).

    docs/demo.md has the presence accuracy at each size."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(cfg.seed)
    size, hidden = cfg.image_size, cfg.tower_hidden
    vcfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=3, num_attention_heads=4,
                            image_size=size, patch_size=cfg.patch_size, projection_dim=hidden)
    proc = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    tower = CLIPVisionModel(vcfg)
    layers = tower.encoder.layers
    tower.encoder.layers = layers[:-1]  # the last layer feeds nothing read here or by LLaVA: skip it
    loss = pretrain_presence(tower, lambda x: tower(pixel_values=x).last_hidden_state[:, 1:].amax(1), hidden, proc, cfg, cfg.tower_steps, "vision tower")
    tower.encoder.layers = layers
    out.mkdir(parents=True, exist_ok=True)
    tower.save_pretrained(out)
    proc.save_pretrained(out)
    write_json(out / "tower_pretraining.json", {"steps": cfg.tower_steps, "scenes": cfg.tower_scenes, "final_bce": loss})
    return out


def small_llm(out: Path, tokenizer, cfg: DemoConfig) -> Path:
    """A small random Llama over the world's tokenizer (annotaudit.testing.tiny_models's shape, wider and deeper when asked)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from annotaudit.testing.tiny_models import BOS_ID, EOS_ID, PAD_ID

    torch.manual_seed(cfg.seed)
    h = cfg.llm_hidden
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=h, intermediate_size=2 * h, num_hidden_layers=cfg.llm_layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = PAD_ID
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pretrain_llm(llm_dir: Path, world: shapes.World, cfg: DemoConfig) -> Path:
    """Teach the small Llama the world's language, text only, before it meets a picture.

    A real LLaVA starts from a pretrained LLM, and stage 1 aligns the projector to what that LLM already
    reads. A random frozen LLM gives stage 1 nothing to align to (its loss stays flat) and stage 2 must
    then learn language and looking at once. Measured (POPE random F1, en/it, all else equal): 0.70/0.74
    without this step, 0.72/0.81 after 200 steps, 0.90/0.89 after 600 (about 185 s)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    model = LlamaForCausalLM.from_pretrained(llm_dir)
    ids: list[int] = []
    for files in (world.pretrain, world.instruct):
        for rec in read_json(files["both"]):
            text = " ".join(t["value"].replace("<image>", "").strip() for t in rec["conversations"])
            ids += [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    block = 128
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=cfg.llm_pretrain_steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    with progress("LLM pretraining (text only)", cfg.llm_pretrain_steps) as advance:
        for _ in range(cfg.llm_pretrain_steps):
            batch = blocks[torch.randint(0, len(blocks), (32,), generator=gen)]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            advance()
    model.save_pretrained(llm_dir)
    write_json(llm_dir / "llm_pretraining.json", {"steps": cfg.llm_pretrain_steps, "blocks": len(blocks), "block_tokens": block, "final_loss": round(loss.item(), 4)})
    return llm_dir


def build_models(world: shapes.World, out: Path, cfg: DemoConfig) -> Path:
    """Tower + small Llama (both pretrained on the world) -> LLaVA-NeXT through `lvlm build` (Mistral template, one anyres pinpoint)."""
    from annotaudit.lvlm import build_lvlm

    tower = pretrain_tower(out / "vision_tower", cfg)
    llm = pretrain_llm(small_llm(out / "llm", world_tokenizer(world), cfg), world, cfg)
    size = cfg.image_size
    return build_lvlm(tower, llm, out / "lvlm_untrained", template="mistral", pinpoints=[[size, size]], force=True)


# audits --------------------------------------------------------------------------------------


def build_pope(world: shapes.World, out: Path, cfg: DemoConfig) -> dict[str, Path]:
    """POPE question sets for the held-out pictures, all three settings, per language (folder per language)."""
    from annotaudit.audit.pope.build import build_question_sets, objects_from_coco, write_questions

    objects, files = objects_from_coco([world.instances["val"]])
    folders = {}
    for lang in LANGS:
        sets = build_question_sets(objects, list(SETTINGS), n_images=cfg.pope_images, seed=cfg.seed, language=lang, file_names=files)
        folders[lang] = out / f"pope_questions_{lang}"
        for setting, qs in sets.items():
            write_questions(folders[lang] / f"shapes_pope_{setting}.json", qs)
    return folders


def audit(model_dir: Path, world: shapes.World, questions: dict[str, Path], out: Path, cfg: DemoConfig) -> dict[str, Any]:
    """POPE (three settings) and CHAIR, in English and Italian, for one checkpoint."""
    from annotaudit.audit.chair.metric import build_ground_truth
    from annotaudit.audit.chair.run import ChairConfig, run_chair
    from annotaudit.audit.pope.run import PopeConfig, run_pope
    from annotaudit.models import load_model

    model = load_model("hf:" + str(model_dir))
    result: dict[str, Any] = {"pope": {}, "chair": {}}
    for lang in LANGS:
        result["pope"][lang] = run_pope(PopeConfig(questions[lang], world.images, model, setting="all", language=lang, batch_images=8,
                                                   max_new_tokens=6, seed=cfg.seed), out / f"pope_{lang}")
    truth = build_ground_truth([world.instances["val"]], [world.captions[("val", "en")]])
    for lang in LANGS:
        result["chair"][lang] = run_chair(ChairConfig(model, world.images, truth, {lang: CAPTION_PROMPT[lang]}, sample=cfg.chair_images,
                                                      seed=cfg.seed, max_new_tokens=48, batch_size=8, language=lang), out / f"chair_{lang}")
    return result


# annotation and MMBT -------------------------------------------------------------------------


def annotate_task(world: shapes.World, model: str, out: Path, mode: str, cfg: DemoConfig) -> dict[str, Any]:
    """Label the task's training split with one annotator (the study's protocol for generate mode)."""
    from annotaudit.annotate.run import RunConfig, run

    rc = RunConfig(task=str(world.task), data=str(world.memes), model=model, split="train", mode=mode, batch_size=64, seed=cfg.seed,
                   max_new_tokens=16, do_sample=mode == "generate", temperature=0.8, top_p=0.9)
    return run(rc, out)


def _run_in_child(fn: Any, args: tuple, log: Path, conn: Any) -> None:
    """The body of `Apart`'s process: `fn(*args)` on one torch thread, its output into `log`, its result sent back
    as ("ok", result) or ("error", exception)."""
    os.environ["ANNOTAUDIT_NO_PROGRESS"] = "1"
    torch.set_num_threads(1)
    try:
        with open(log, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            conn.send(("ok", fn(*args)))  # its own file: two processes writing one terminal interleave their lines
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as its message
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class Apart:
    """`fn(*args)` in a spawned process on one torch thread, while this process goes on with the others.

    The demo's models are small, so a second torch thread speeds them up by well under twice, and two jobs
    on a core each finish sooner than the two in turn on both cores. This process keeps the remaining
    threads until `wait()`, which blocks until the job ends and only then gives them back: some kernels
    sum in another order on one thread than on two, so the thread count may change only at a fixed point
    of the run, never when the other job happens to end, or the figures would depend on timing.
    The job's output goes to `log`. With a single torch thread there is nothing to split, and the job runs
    here at once."""

    def __init__(self, fn: Any, *args: Any, log: Path):
        import multiprocessing

        self.threads = torch.get_num_threads()
        self.process = None
        self.outcome: tuple[str, Any] | None = None  # ("ok", result) or ("error", exception), once the job has ended
        if self.threads < 2:
            self.outcome = ("ok", fn(*args))
            return
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_run_in_child, args=(fn, args, log, child), daemon=True)
        self.process.start()
        child.close()
        torch.set_num_threads(self.threads - 1)

    def wait(self) -> Any:
        """The job's result; its error, raised here. This process has all its threads again afterwards."""
        if self.outcome is None:
            try:
                self.outcome = self.conn.recv()
            except EOFError:
                self.outcome = ("error", RuntimeError(f"the demo's second process ended without a result (exit code {self.process.exitcode})"))
            finally:
                self.process.join()
                torch.set_num_threads(self.threads)
        status, value = self.outcome
        if status == "error":
            raise value
        return value


def mmbt_encoders(world: shapes.World, out: Path, cfg: DemoConfig) -> tuple[Path, Path]:
    """MMBT's encoders: a small BERT over a WordPiece vocabulary of the world's sentences, and the tiny ResNet pretrained on presence."""
    from transformers import AutoImageProcessor, BertConfig, BertModel, ResNetModel

    from annotaudit.testing.tiny_models import tiny_resnet, train_wordpiece

    torch.manual_seed(cfg.seed)
    texts = [shapes.presence_statement(n) for n in shapes.NAMES] + [rec["text"] for _, rec in iter_jsonl(world.memes / "train.jsonl")]
    texts += [a["caption"] for a in read_json(world.captions[("train", "en")])["annotations"]]
    tokenizer = train_wordpiece(texts)
    h = cfg.bert_hidden
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=h, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * h,
                                max_position_embeddings=128))
    (out / "bert").mkdir(parents=True, exist_ok=True)
    bert.save_pretrained(out / "bert")
    tokenizer.save_pretrained(out / "bert")
    resnet_dir = tiny_resnet(out / "resnet", seed=cfg.seed, image_size=cfg.image_size)
    resnet = ResNetModel.from_pretrained(resnet_dir)
    loss = pretrain_presence(resnet, lambda x: resnet(pixel_values=x).pooler_output.flatten(1), resnet.config.hidden_sizes[-1],
                             AutoImageProcessor.from_pretrained(resnet_dir), cfg, cfg.resnet_steps, "ResNet")
    resnet.save_pretrained(resnet_dir)
    write_json(resnet_dir / "resnet_pretraining.json", {"steps": cfg.resnet_steps, "scenes": cfg.tower_scenes, "final_bce": loss})
    return out / "bert", resnet_dir


def matching_examples(world: shapes.World, seed: int) -> list:
    """Presence sentences about the training pictures, true or false by their instances: two objects there, two not, per picture."""
    from annotaudit.classifiers.data import Example

    data = read_json(world.instances["train"])
    names = {c["id"]: c["name"] for c in data["categories"]}
    present: dict[int, set[str]] = {}
    for ann in data["annotations"]:
        present.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    rng = random.Random(f"matching-{seed}")
    examples = []
    for img in data["images"]:
        there = sorted(present.get(img["id"], ()))
        absent = [n for n in shapes.NAMES if n not in there]
        for k, name in enumerate(rng.sample(there, min(2, len(there))) + rng.sample(absent, 2)):
            label = "not_hateful" if name in there else "hateful"
            examples.append(Example(f"{img['id']}-{k}", shapes.presence_statement(name), world.images / img["file_name"], label))
    rng.shuffle(examples)
    return examples


def pretrain_mmbt(world: shapes.World, models_dir: Path, cfg: DemoConfig) -> tuple[Path, Path, dict[str, Any]]:
    """MMBT's encoders, pretrained on the world: the ResNet on presence, then BERT on image-text matching over the training pictures.

    The matching run keeps the ResNet frozen; its BERT becomes the text encoder of every arm, while the
    image projection and the head start fresh, so each arm's labels must teach how picture and sentence
    meet. With encoders pretrained apart, 180 labelled items leave MMBT near chance (docs/demo.md)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertModel

    from annotaudit.annotate.tasks import get_task
    from annotaudit.classifiers.train import ClassifierTrainConfig, train_classifier

    bert, resnet = mmbt_encoders(world, models_dir, cfg)
    examples = matching_examples(world, cfg.seed)
    dev = examples[: len(examples) // 10]
    tc = ClassifierTrainConfig(text_encoder=str(bert), image_encoder=str(resnet), epochs=cfg.matching_epochs, batch_size=32, lr=1e-3,
                               freeze_image_epochs=cfg.matching_epochs, seed=cfg.seed, patience=cfg.matching_epochs)
    matching = models_dir / "mmbt_matching"
    metrics = train_classifier(get_task("hateful_memes"), examples[len(dev) :], dev, dev, tc, matching, force=True,
                               extra_config={"pretraining": "image-text matching on the world's training pictures"})
    text_encoder = BertModel.from_pretrained(bert)
    prefix = "text_encoder."
    weights = {k[len(prefix) :]: v for k, v in load_file(str(matching / "model" / "model.safetensors")).items() if k.startswith(prefix)}
    text_encoder.load_state_dict(weights)
    matched = models_dir / "bert_matched"
    text_encoder.save_pretrained(matched)
    AutoTokenizer.from_pretrained(bert).save_pretrained(matched)
    return matched, resnet, metrics


def mmbt_config(bert: Path, resnet: Path, cfg: DemoConfig):
    """The training every MMBT arm shares: the matched BERT and the pretrained ResNet (frozen), a fresh projection and head."""
    from annotaudit.classifiers.train import ClassifierTrainConfig

    return ClassifierTrainConfig(text_encoder=str(bert), image_encoder=str(resnet), epochs=cfg.mmbt_epochs, batch_size=16, lr=cfg.lr_mmbt,
                                 freeze_image_epochs=cfg.mmbt_epochs, seed=cfg.seed, patience=cfg.mmbt_epochs)


def mmbt_pretraining(world: shapes.World, out: Path, cfg: DemoConfig) -> dict[str, Any]:
    """The MMBT work that needs only the world: both encoders' pretraining, and the text-only control on human labels."""
    from annotaudit.annotate.tasks import get_task
    from annotaudit.classifiers.data import load_splits
    from annotaudit.classifiers.train import train_classifier

    task = get_task("hateful_memes")
    bert, resnet, matching = pretrain_mmbt(world, out / "models", cfg)
    text_only = [[replace(ex, image=None) for ex in split] for split in load_splits(task, world.memes)]
    result = train_classifier(task, *text_only, mmbt_config(bert, resnet, cfg), out / "classify_text_only", force=True,
                              extra_config={"labels": "human", "modalities": "text only"})
    return {"bert": bert, "resnet": resnet, "matching": {"dev_auroc": matching.get("auroc")}, "text_only": result}


def mmbt(world: shapes.World, runs: list[Path], encoders: dict[str, Any], out: Path, cfg: DemoConfig) -> dict[str, Any]:
    """MMBT on human labels against each annotator's labels, tested on the same human test split, beside the text-only control."""
    from annotaudit.annotate.tasks import get_task
    from annotaudit.classifiers.data import load_splits
    from annotaudit.classifiers.label_sources import train_label_sources

    task = get_task("hateful_memes")
    tc = mmbt_config(encoders["bert"], encoders["resnet"], cfg)
    result = train_label_sources(task, load_splits(task, world.memes), runs, 1, tc, out / "classify", data=str(world.memes), force=True)
    return {**result, "text_only": encoders["text_only"], "matching": encoders["matching"]}


def world_side(world: shapes.World, out: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Everything that needs only the world, not the LVLM: SmolLM2's annotation and MMBT's pretraining and text-only control."""
    smollm2 = annotate_task(world, SMOLLM2, out / "annotate_smollm2", "generate", cfg) if cfg.annotate_smollm2 else None
    return {"smollm2": smollm2, "mmbt": mmbt_pretraining(world, out, cfg)}


def compare_runs(out: Path, runs: list[Path], seed: int) -> dict[str, Any]:
    """Every annotate and MMBT figure with a bootstrap interval, through `annotaudit compare`."""
    from annotaudit.compare import compare

    return compare([*runs, out / "classify", out / "classify_text_only"], out / "compare", labels=[f"human, text only={out / 'classify_text_only'}"],
                   resamples=1000, seed=seed, formats="html,md,csv", force=True)


# The authors' epsilon for crowd workers (docs/verdict.md, "Choosing ε").
CROWD_EPSILON = 0.1
TRUE_CLASS = "not_hateful"  # a true sentence: the task's label 0


def crowd_verdict(world: shapes.World, runs: list[Path], out: Path, seed: int) -> dict[str, Any]:
    """Each annotate run against the world's three simulated crowd workers, through `annotate verdict`: the alt-test,
    the humans' alpha as the ceiling, PPI prevalence on the items the crowd did not label, and label issues where a
    run gave probabilities. Runs after every other step and draws nothing from the demo's random streams."""
    from annotaudit.annotate.verdict import Options, verdict

    return verdict(world.memes / shapes.CROWD_FILE, runs, out / "verdict", Options(epsilon=CROWD_EPSILON, seed=seed), force=True).metrics


def _cell_keys(key: str, fig: dict[str, Any] | None, value: str = "value", n: str | None = None) -> dict[str, Any]:
    if not fig:
        return {}
    found = {key: _num(fig[value]), f"{key}.low": _num(fig["low"]), f"{key}.high": _num(fig["high"])}
    return {**found, f"{key}.n": fig[n]} if n else found


def verdict_summary(metrics: dict[str, Any], annotators: dict[str, str]) -> dict[str, Any]:
    """Flat keys: verdict.<who>.{winning_rate,passed,epsilon,n_items,advantage_probability(.low,.high)},
    alpha.humans and alpha.with_<who> (nominal, .low, .high, .n), prevalence.true.<who>.{ppi,humans_only,llm_only}
    (.low, .high; .n for the last two) with n_human, n_llm_only and lambda."""
    flat: dict[str, Any] = {}
    humans = (metrics["agreement"].get("humans") or {}).get("alpha", {}).get("nominal")
    flat.update(_cell_keys("alpha.humans", humans, n="n_items"))
    for who, model in annotators.items():
        test = metrics["llms"].get(model)
        if test is not None:
            flat.update({f"verdict.{who}.winning_rate": _num(test["winning_rate"]), f"verdict.{who}.passed": bool(test["passed"]),
                         f"verdict.{who}.epsilon": _num(test["epsilon"]), f"verdict.{who}.n_items": test["n_items"]})
            rho = {"value": test["advantage_probability"], **test["advantage_probability_interval"]}
            flat.update(_cell_keys(f"verdict.{who}.advantage_probability", rho))
        added = metrics["agreement"]["llms"].get(model, {}).get("alpha_added", {}).get("nominal")
        flat.update(_cell_keys(f"alpha.with_{who}", added, n="n_items"))
        prevalence = metrics["prevalence"].get(model, {}).get(TRUE_CLASS)
        if prevalence is not None:
            key = f"prevalence.true.{who}"
            flat.update(_cell_keys(f"{key}.ppi", prevalence["ppi"], "estimate"))
            flat.update(_cell_keys(f"{key}.humans_only", prevalence["classical"], "estimate", n="n"))
            flat.update(_cell_keys(f"{key}.llm_only", prevalence["llm_only"], "estimate", n="n"))
            flat.update({f"{key}.n_human": prevalence["n_human"], f"{key}.n_llm_only": prevalence["n_llm_only"], f"{key}.lambda": _num(prevalence["lambda"])})
    return flat


# the whole run -------------------------------------------------------------------------------


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


def run_demo(out: Path, quick: bool = False, config: DemoConfig | None = None, seed: int | None = None) -> dict[str, Any]:
    """The whole demo; returns the summary also written to out/summary.json.

    SmolLM2's annotation and MMBT's pretraining run in a spawned process (`Apart`), so a script that calls
    this needs the usual `if __name__ == "__main__":` guard."""
    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    out = Path(out)
    run = RunDir(out, {"demo": asdict(cfg), "quick": quick}, kind="demo", force=True, outputs=[])
    times: dict[str, float] = {}
    t = time.time()

    def lap(name: str) -> None:
        nonlocal t
        times[name] = round(time.time() - t, 1)
        t = time.time()

    torch.manual_seed(cfg.seed)
    _step("1/7 generating the shapes world")
    world = shapes.generate_world(out / "world", n_train=cfg.n_train, n_val=cfg.n_val, n_memes=cfg.n_memes, seed=cfg.seed, image_size=2 * cfg.image_size)
    questions = build_pope(world, out, cfg)
    lap("world")
    side = Apart(world_side, world, out, cfg, log=out / SECOND_PROCESS_LOG)
    if side.process is not None:
        console.print("meanwhile a second process annotates with SmolLM2-135M and pretrains MMBT's encoders "
                      f"(steps 6 and 7 show them; its log: {out / SECOND_PROCESS_LOG})")
    _step("2/7 building the LVLM (lvlm build)")
    untrained = build_models(world, out / "models", cfg)
    lap("build")
    _step("3/7 auditing the untrained LVLM (POPE, CHAIR; en, it)")
    before = audit(untrained, world, questions, out / "audit_before", cfg)
    lap("audit_before")
    _step("4/7 training: stage 1 (projector) and stage 2 (projector + LLM)")
    from annotaudit.lvlm.train import train

    stage1 = train(untrained, world.pretrain["both"], world.images, out / "models" / "lvlm_stage1", "pretrain", lr=cfg.lr_pretrain,
                   epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, seed=cfg.seed, force=True, cache_images=True)
    world_only = side.wait()  # both threads from here on, whenever the second process ended: a fixed point keeps the figures fixed
    trained = train(stage1, world.instruct["both"], world.images, out / "models" / "lvlm_stage2", "finetune", lr=cfg.lr_finetune,
                    epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, seed=cfg.seed, force=True, group_by_length=True,
                    cache_images=True)
    lap("train")
    _step("5/7 auditing the trained LVLM")
    after = audit(trained, world, questions, out / "audit_after", cfg)
    lap("audit_after")
    _step("6/7 annotating the image+text task (trained LVLM, SmolLM2-135M)")
    annotators = {"lvlm": "hf:" + str(trained), **({"smollm2": SMOLLM2} if cfg.annotate_smollm2 else {})}
    annotations = {"lvlm": annotate_task(world, annotators["lvlm"], out / "annotate_lvlm", "score", cfg),
                   **({"smollm2": world_only["smollm2"]} if cfg.annotate_smollm2 else {})}
    runs = [out / f"annotate_{who}" for who in annotators]
    lap("annotate")
    _step("7/7 MMBT on human labels against LLM labels")
    classify = mmbt(world, runs, world_only["mmbt"], out, cfg)
    comparison = compare_runs(out, runs, cfg.seed)
    lap("mmbt")
    _step("the annotators against a simulated crowd (annotate verdict)")
    crowd = crowd_verdict(world, runs, out, cfg.seed)
    lap("verdict")
    summary = flat_summary(before, after, annotations, classify, comparison, annotators)
    summary.update(verdict_summary(crowd, annotators))
    summary["seconds"] = times
    write_json(out / "summary.json", summary)
    demo_report(out).write(out)
    run.finish(**{"seconds_" + k: v for k, v in times.items()})
    console.print(f"[green]report: {out / 'report.html'}  summary: {out / 'summary.json'}")
    return summary


# summary and report --------------------------------------------------------------------------


def _num(v: Any) -> Any:
    return round(float(v), 4) if isinstance(v, int | float) else v


def flat_summary(before: dict, after: dict, annotations: dict, classify: dict, comparison: dict, annotators: dict[str, str]) -> dict[str, Any]:
    """Flat keys: pope.<when>.<lang>.<setting>.<metric>, chair.<when>.<lang>.<metric>, annotate.<who>.<metric>,
    mmbt.<arm>.<metric> with .low and .high (95% bootstrap over test items) for the arms human, text_only and each annotator."""
    flat: dict[str, Any] = {}
    for when, res in (("before", before), ("after", after)):
        for lang in LANGS:
            for setting in SETTINGS:
                row = res["pope"][lang][setting]
                for m in ("f1", "accuracy", "precision", "recall", "yes_ratio"):
                    flat[f"pope.{when}.{lang}.{setting}.{m}"] = _num(row[m])
            for m in ("chair_i", "chair_s", "recall", "mean_length"):
                if m in res["chair"][lang]:
                    flat[f"chair.{when}.{lang}.{m}"] = _num(res["chair"][lang][m])
    for who, m in annotations.items():
        for key in ("accuracy_all", "answer_rate", "macro_f1", "kappa", "auroc"):
            if m.get(key) is not None:
                flat[f"annotate.{who}.{key}"] = _num(m[key])
    from annotaudit.compare.runs import model_name

    tables = {t["name"]: t for t in comparison["tables"]}
    short = {who: model_name(model) for who, model in annotators.items()}
    for row in tables["mmbt"]["rows"]:
        arm = arm_key(row, short)
        for metric, column in (("auroc", "AUROC"), ("accuracy", "Acc")):
            cell = row.get(column)
            if isinstance(cell, dict):
                flat[f"mmbt.{arm}.{metric}"] = _num(cell["value"])
                flat[f"mmbt.{arm}.{metric}.low"] = _num(cell["low"])
                flat[f"mmbt.{arm}.{metric}.high"] = _num(cell["high"])
    flat["mmbt.matching.dev_auroc"] = _num(classify["matching"]["dev_auroc"])
    return flat
