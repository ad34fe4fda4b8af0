"""The zoo's vision-language model: generated shape images and a tiny LLaVA trained on them.

Images show 1-3 shapes of one kind (square, circle, triangle) in one colour on a light background.
Questions ask for the colour, the shape and the count, so a right answer needs the image.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from modelhub.zoo import chat
from modelhub.zoo.text import (
    TextSpec,
    generation_config,
    llama_config,
    lr_at,
    save_tokenizer,
    token_id,
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
}
SHAPES = ["square", "circle", "triangle"]
COUNT_WORDS = ["zero", "one", "two", "three"]
# colour, shape, count, description: colour is asked most, as it is what the build probes.
QUESTION_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
IMAGE_SIZE = 32
PATCH_SIZE = 8


@dataclass(frozen=True)
class ShapeScene:
    colour: str
    shape: str
    count: int


def draw_scene(scene: ShapeScene, rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``scene`` at random non-overlapping-ish positions in a size x size RGB image."""
    grey = rng.randint(225, 255)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    fill = COLOURS[scene.colour]
    if scene.count == 1:
        # A single shape fills most of the picture: most image patches then carry its colour,
        # which is what lets a tiny model learn to read colours within a few hundred steps.
        side = rng.randint(size * 5 // 8, size - 2)
        boxes = [(rng.randint(0, size - side), rng.randint(0, size - side), side)]
    else:
        half = size // 2  # one shape per quadrant keeps counts readable
        boxes = []
        for cell in rng.sample(range(4), scene.count):
            side = rng.randint(half * 5 // 8, half - 2)
            x = (cell % 2) * half + rng.randint(0, half - side)
            y = (cell // 2) * half + rng.randint(0, half - side)
            boxes.append((x, y, side))
    for x0, y0, side in boxes:
        box = (x0, y0, x0 + side - 1, y0 + side - 1)
        if scene.shape == "square":
            draw.rectangle(box, fill=fill)
        elif scene.shape == "circle":
            draw.ellipse(box, fill=fill)
        else:
            draw.polygon([(x0 + side // 2, y0), (x0, y0 + side - 1), box[2:]], fill=fill)
    return img


def scene_qa(scene: ShapeScene, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) pair about ``scene``."""
    plural = scene.shape + ("s" if scene.count > 1 else "")
    kind = rng.choices(range(4), QUESTION_WEIGHTS)[0]
    if kind == 0:
        q = rng.choice(
            ["What colour is the shape?", "What colour are the shapes?", "Which colour?"]
        )
        return q, f"The colour is {scene.colour}."
    if kind == 1:
        q = rng.choice(["What shape is this?", "What shape do you see?"])
        return q, f"It is a {scene.shape}." if scene.count == 1 else f"They are {plural}."
    if kind == 2:
        q = "How many shapes are there?"
        n = COUNT_WORDS[scene.count]
        return q, f"There {'is' if scene.count == 1 else 'are'} {n} {plural}."
    q = rng.choice(["Describe the image.", "What is in the picture?"])
    return q, f"I see {COUNT_WORDS[scene.count]} {scene.colour} {plural}."


def random_scene(rng: random.Random) -> ShapeScene:
    return ShapeScene(rng.choice(sorted(COLOURS)), rng.choice(SHAPES), rng.randint(1, 3))


def make_processor(tok: PreTrainedTokenizerFast) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, which "default" drops again
        chat_template=chat.CHAT_TEMPLATE,
        image_token=chat.IMAGE,
    )


def llava_config(spec: TextSpec, tok: PreTrainedTokenizerFast) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=64,
    )
    text_config = llama_config(spec, tok, max_len=512)
    return LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_index=token_id(tok, chat.IMAGE),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )


def build_llava(
    spec: TextSpec, tok: PreTrainedTokenizerFast, base: LlamaForCausalLM | None
) -> LlavaForConditionalGeneration:
    """A fresh LLaVA whose language model starts from ``base`` (a trained zoo text model)."""
    model = LlavaForConditionalGeneration(llava_config(spec, tok))
    if base is not None:
        model.model.language_model.load_state_dict(base.model.state_dict())
        model.lm_head.load_state_dict(base.lm_head.state_dict())
    return model


def _examples(
    processor: LlavaProcessor, n: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenised image QA examples: (input_ids, attention_mask, labels, pixel_values).

    Labels cover only the answer (and its end token): the question is given, the answer is learnt.
    """
    prompts, fulls, images = [], [], []
    for _ in range(n):
        scene = random_scene(rng)
        q, a = scene_qa(scene, rng)
        user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}
        prompt = chat.render([user], add_generation_prompt=True)
        prompts.append(prompt)
        fulls.append(prompt + a + chat.END + "\n")
        images.append(draw_scene(scene, rng))
    tok = processor.tokenizer
    tok.padding_side = "right"
    enc = processor(images=images, text=fulls, return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for i, prompt in enumerate(prompts):
        prompt_len = len(processor(images=images[i], text=prompt)["input_ids"][0])
        labels[i, :prompt_len] = -100
    return enc["input_ids"], enc["attention_mask"], labels, enc["pixel_values"]


def train_llava(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    text_blocks: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    on_step: Callable[[], None] | None = None,
    vision_lr_scale: float = 1.0,
    done: Callable[[int], bool] | None = None,
    check_every: int = 50,
    rounds: int = 1,
    cooldown: int = 150,
) -> int:
    """Train on generated image QA, with one text block per step so chat skills are kept.

    Learning to look at the image happens abruptly after a number of steps that varies with the
    seed and with the CPU's arithmetic (the quick zoo's zoo-llava-m passed the probe within 800
    steps on one machine and was still at 0.75 after 800 on another), so when ``done`` is given it is asked every
    ``check_every`` steps (with the step count so far). Each round is one warmup and cosine decay
    over ``steps``; while ``done`` has not passed, up to ``rounds`` of them run, each a warm
    restart from where the last one ended. Once it passes, ``cooldown`` more steps take the
    learning rate linearly to zero: a model stopped right after its jump still misread some
    images (two of four large red squares, as yellow). Returns the number of steps run.
    """
    rng = random.Random(f"vision-{seed}")
    gen = torch.Generator().manual_seed(seed)
    ids, mask, labels, pixels = _examples(processor, steps * batch // 4 + batch, rng)
    # The vision tower and projector start from scratch while the language model is already
    # trained: they get a higher learning rate so that image features become useful quickly.
    fresh = [
        p for n, p in model.named_parameters() if "language_model" not in n and "lm_head" not in n
    ]
    fresh_ids = {id(p) for p in fresh}
    rest = [p for p in model.parameters() if id(p) not in fresh_ids]
    groups = [{"params": fresh, "scale": vision_lr_scale}, {"params": rest, "scale": 1.0}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    model.train()
    step, end = 0, steps * rounds
    passed: tuple[int, float] | None = None  # the step at which `done` passed, and the lr then
    while step < end:
        if passed is None:
            rate = lr_at(step % steps, steps, lr)
        else:
            rate = passed[1] * (end - step) / (end - passed[0])
        for group in opt.param_groups:
            group["lr"] = rate * group["scale"]
        idx = torch.randint(0, ids.shape[0], (batch,), generator=gen)
        loss = model(
            input_ids=ids[idx],
            attention_mask=mask[idx],
            pixel_values=pixels[idx],
            labels=labels[idx],
        ).loss
        if text_blocks.shape[0]:
            t = text_blocks[torch.randint(0, text_blocks.shape[0], (1,), generator=gen)]
            loss = loss + 0.3 * model(input_ids=t, labels=t).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if on_step is not None:
            on_step()
        if done is not None and passed is None and step % check_every == 0 and step < end:
            model.eval()
            if done(step):
                passed = (step, lr_at(step % steps, steps, lr))
                end = min(end, step + cooldown)
            model.train()
    model.eval()
    return step


@torch.no_grad()
def colour_accuracy(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    seed: int,
    per_colour: int = 10,
) -> float:
    """Share of unseen images whose colour the model names, for the colour it reads worst (the
    build's early-stop probe). Every colour is shown as often: a model can name most images
    right and still read one colour as another (one at 0.95 on a mixed sample got 15 of 21 red
    shapes)."""
    rng = random.Random(f"vision-probe-{seed}")
    worst = 1.0
    for colour in sorted(COLOURS):
        hits = 0
        for _ in range(per_colour):
            scene = ShapeScene(colour, rng.choice(SHAPES), rng.randint(1, 3))
            reply = answer(model, processor, draw_scene(scene, rng), "What colour is the shape?", 8)
            hits += colour in reply
        worst = min(worst, hits / per_colour)
    return worst


@torch.no_grad()
def heldout_image_loss(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, seed: int, n: int = 64
) -> float:
    """Mean answer-token cross-entropy on image QA the model never saw."""
    ids, mask, labels, pixels = _examples(processor, n, random.Random(f"vision-heldout-{seed}"))
    return float(model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss)


@torch.no_grad()
def answer(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    image: Image.Image,
    question: str,
    max_new_tokens: int = 20,
) -> str:
    """Greedy answer to ``question`` about ``image`` (used by the build's smoke check and tests)."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    prompt = chat.render([user], add_generation_prompt=True)
    enc = processor(images=image, text=prompt, return_tensors="pt")
    end = token_id(processor.tokenizer, chat.END)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end)
    return str(
        processor.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    )


def save_llava(model: LlavaForConditionalGeneration, processor: LlavaProcessor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tok = processor.tokenizer
    model.generation_config = generation_config(tok)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    save_tokenizer(tok, out)
