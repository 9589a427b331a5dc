"""The model card: ``README.md`` in the saved model dir, with YAML metadata the Hugging Face Hub reads.

The metadata goes through :class:`huggingface_hub.ModelCardData` (license, base_model, datasets,
metrics, pipeline_tag, library_name and a ``model-index`` with the test results), so what the Hub
shows (widget, filters, the results table) comes from the same values as ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from pipeline.config import RunConfig
from pipeline.markdown import METRIC_COLUMNS, cell, metrics_note, percent, table

UCI_HUB_DATASET = "ucirvine/sms_spam"
CARD_METRICS = ("accuracy", "precision", "recall", "f1")
USAGE_PLACEHOLDER = "path/to/model"
EXAMPLE_SPAM = "WINNER! Claim your free prize now, call 09061701461"
"""Stands for the model's location in the usage snippet until the card knows its Hub repo."""


def base_model_id(cfg: RunConfig) -> str | None:
    """The Hub id the weights came from; None for random init or a local directory (not a Hub id)."""
    name = cfg.model.name_or_path
    if cfg.model.from_config is not None or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return None
    return name


def hub_datasets(cfg: RunConfig) -> list[str] | None:
    if cfg.data.source == "uci":
        return [UCI_HUB_DATASET]
    if cfg.data.source == "hub":
        return [str(cfg.data.hub_name)]
    return None


def card_data(cfg: RunConfig, metrics: dict[str, Any], model_name: str, *, merged: bool = False) -> ModelCardData:
    adapter = cfg.model.mode in ("lora", "qlora") and not merged
    datasets = hub_datasets(cfg)
    test = metrics.get("test")
    eval_results = None
    if test and datasets and not cfg.data.is_multi_label:  # model-index needs a Hub dataset id; a local file has none
        dataset = datasets[0]
        eval_results = [
            EvalResult(
                task_type="text-classification",
                task_name="Text Classification",
                dataset_type=dataset,
                dataset_name=f"{dataset} (held-out test split, {_rows(test)} rows)",
                metric_type=key,
                metric_name=key.capitalize() if key != "f1" else "F1",
                metric_value=round(float(test[key]), 4),
            )
            for key in CARD_METRICS
        ]
    return ModelCardData(
        model_name=model_name,
        language=["en"] if cfg.data.source == "uci" else None,
        license=cfg.hub.license,
        library_name="peft" if adapter else "transformers",
        base_model=base_model_id(cfg),
        datasets=datasets,
        metrics=list(CARD_METRICS) + (["roc_auc"] if test and "roc_auc" in test else []),
        pipeline_tag="text-classification",
        tags=[
            "text-classification",
            "multi-label-classification" if cfg.data.is_multi_label else "spam-detection",
            "spam-tune",
            cfg.model.mode,
            *(["merged"] if merged else []),
        ],
        eval_results=eval_results,
    )


def _rows(metrics: dict[str, Any]) -> int:
    return sum(c["support"] for c in metrics.get("per_class", {}).values())


def results_table(metrics: dict[str, Any]) -> str:
    test = metrics.get("test")
    if not test:
        return "No test split was evaluated.\n"
    columns = [(k, n) for k, n in METRIC_COLUMNS if k in test]
    rows = [["this model (argmax)", *(percent(test.get(k)) for k, _ in columns)]]
    threshold = metrics.get("threshold") or {}
    if threshold.get("value") is not None and threshold.get("test"):
        rows.append(
            [
                f"this model, threshold {threshold['value']:.3f}",
                *(percent(threshold["test"].get(k)) for k, _ in columns),
            ]
        )
    baseline = (metrics.get("baseline") or {}).get("test")
    if baseline:
        rows.append([cell(metrics["baseline"]["model"]), *(percent(baseline.get(k)) for k, _ in columns)])
    return table(["Model", *(f"{n} (%)" for _, n in columns)], rows, ["---", *["---:"] * len(columns)])


def usage_section(cfg: RunConfig, repo: str, *, adapter: bool) -> str:
    if adapter:
        load = (
            "from peft import AutoPeftModelForSequenceClassification\n"
            "from transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForSequenceClassification.from_pretrained("{repo}").eval()\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n\n'
            f'inputs = tokenizer({EXAMPLE_SPAM!r}, return_tensors="pt")\n'
            "probabilities = model(**inputs).logits.softmax(-1)[0]\n"
            f"print(dict(zip({list(cfg.data.id2label.values())!r}, probabilities.tolist())))\n"
        )
    else:
        load = (
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("text-classification", model="{repo}")\n'
            f"classifier({EXAMPLE_SPAM!r})\n"
        )
    return (
        f"```python\n{load}```\n\n"
        "Or with spam-tune, which also applies the decision threshold recorded in `spam_tune.json`:\n\n"
        f'```bash\nspam-tune predict {repo} "Are we still on for lunch?"\n```\n'
    )


def training_section(cfg: RunConfig, metrics: dict[str, Any]) -> str:
    data = metrics.get("data", {})
    sizes = data.get("split_sizes", {})
    lines = [
        f"- Data: {_data_source(cfg)}; {data.get('rows_read', '?'):,} rows read, balance `{cfg.data.balance}`, "
        f"dedupe `{str(cfg.data.dedupe).lower()}`, split `{cfg.data.split_mode}` "
        f"(train/validation/test = {sizes.get('train')}/{sizes.get('validation')}/{sizes.get('test')}).",
    ]
    if data.get("test_in_train"):
        lines.append(f"- {data['test_in_train']} test texts also occur verbatim in train (the data has duplicates).")
    params = metrics.get("parameters")
    if params:
        lines.append(
            f"- Trainable parameters: {params['trainable']:,} of {params['total']:,} (mode `{params['mode']}`)."
        )
    settings = {"model": _without_paths(cfg.to_dict()["model"]), "training": cfg.to_dict()["training"]}
    if cfg.model.mode in ("lora", "qlora"):
        settings["adapter"] = cfg.to_dict()["adapter"]
    settings["evaluation"] = cfg.to_dict()["evaluation"]
    return "\n".join(lines) + f"\n\n```yaml\n{yaml.safe_dump(settings, sort_keys=False).rstrip()}\n```\n"


def _without_paths(model: dict[str, Any]) -> dict[str, Any]:
    """The model settings minus a name_or_path that is a local path (private) or unused (from_config)."""
    unused = model.get("from_config") is not None or str(model["name_or_path"]).startswith(("/", "~", "."))
    return {k: v for k, v in model.items() if not (k == "name_or_path" and unused)}


def _data_source(cfg: RunConfig) -> str:
    if cfg.data.source == "uci":
        return "the UCI SMS Spam Collection (Almeida & Gómez Hidalgo, 2011; CC BY 4.0)"
    if cfg.data.source == "hub":
        return f"the Hub dataset `{cfg.data.hub_name}`"
    return f"a local file `{Path(str(cfg.data.path)).name}`"


LIMITATIONS = """\
- The SMS Spam Collection is small (5,574 messages, 747 spam) and old: English SMS collected around 2011-2012,
  mostly from the UK and Singapore. Spam has changed since (links, delivery and crypto scams, other languages);
  expect lower accuracy on today's messages and re-evaluate on your own traffic before relying on it.
- The data holds many exact duplicates, and the balanced split puts some test texts in train too, so test
  scores are somewhat optimistic.
- The test split is balanced (about 50 % spam) when `data.balance=undersample`; real inboxes hold far less
  spam, so real-world precision is lower than the test precision at the same threshold.
- GPT-2 reads only the first `max_length` tokens and inherits the biases of its web training data.
"""

CUSTOM_LIMITATIONS = """\
- Trained on a custom data set; it only knows the kinds of messages in it. Evaluate on your own data.
- GPT-2 style models read only the first `max_length` tokens and inherit the biases of their pretraining data.
"""


def multi_label_results(metrics: dict[str, Any]) -> str:
    """Multi-label results: the report's tables (all splits; per label on test) and the saved thresholds."""
    from pipeline.report.multilabel import metrics_table, per_label_table

    splits = [s for s in ("validation", "test") if s in metrics]
    if "test" not in metrics:
        return "No test split was evaluated.\n"
    thresholds = (metrics.get("threshold") or {}).get("values") or {}
    baseline = (metrics.get("baseline") or {}).get("test")
    return metrics_table(metrics, splits) + "\n" + per_label_table(metrics["test"], thresholds, baseline)


def multi_label_usage(cfg: RunConfig, repo: str, thresholds: dict[str, float]) -> str:
    snippet = (
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{repo}", top_k=None)\n'
        f"thresholds = {thresholds!r}\n"
        'scores = classifier(["your text here"])[0]  # every label with its sigmoid score\n'
        'labels = [s["label"] for s in scores if s["score"] >= thresholds[s["label"]]]\n'
    )
    return (
        f"```python\n{snippet}```\n\n"
        "The pipeline applies one sigmoid per label (the model's `problem_type` is `multi_label_classification`); "
        "a text carries every label whose score reaches that label's threshold, saved in `spam_tune.json`. "
        "spam-tune applies them for you:\n\n"
        f'```bash\nspam-tune predict {repo} "your text here"\n```\n'
    )


def multi_label_body(cfg: RunConfig, metrics: dict[str, Any], model_name: str, repo: str, *, merged: bool) -> str:
    names = ", ".join(f"`{n}`" for n in cfg.data.id2label.values())
    base = base_model_id(cfg) or ("a randomly initialised model" if cfg.model.from_config else cfg.model.name_or_path)
    thresholds = (metrics.get("threshold") or {}).get("values") or {n: 0.5 for n in cfg.data.id2label.values()}
    return "\n".join(
        [
            f"# {model_name}\n",
            f"A multi-label text classifier (any number of {names} per text) fine-tuned from {base} with spam-tune "
            f"(mode `{cfg.model.mode}`" + (", adapter merged into the base" if merged else "") + ").\n",
            "## Results\n",
            multi_label_results(metrics),
            "Micro F1 pools every (text, label) decision; subset accuracy counts texts whose whole label set is "
            "right; Hamming loss is the share of wrong (text, label) decisions.\n",
            "## How to use\n",
            multi_label_usage(cfg, repo, thresholds),
            "## Limitations\n",
            CUSTOM_LIMITATIONS,
            "## Training\n",
            training_section(cfg, metrics),
        ]
    )


def body(cfg: RunConfig, metrics: dict[str, Any], model_name: str, repo: str, *, merged: bool = False) -> str:
    if cfg.data.is_multi_label:
        return multi_label_body(cfg, metrics, model_name, repo, merged=merged)
    names = cfg.data.id2label
    classes = ", ".join(f"`{n}`" for n in names.values())
    base = base_model_id(cfg) or ("a randomly initialised model" if cfg.model.from_config else cfg.model.name_or_path)
    limitations = LIMITATIONS if cfg.data.source == "uci" else CUSTOM_LIMITATIONS
    return "\n".join(
        [
            f"# {model_name}\n",
            f"A text classifier ({classes}) fine-tuned from {base} with spam-tune (mode `{cfg.model.mode}`"
            + (", adapter merged into the base" if merged else "")
            + ").\n",
            "## Results\n",
            results_table(metrics),
            metrics_note(names, cfg.evaluation.positive_label),
            "## How to use\n",
            usage_section(cfg, repo, adapter=cfg.model.mode in ("lora", "qlora") and not merged),
            "## Intended use\n",
            "Flagging likely spam in short English text messages (SMS-like), e.g. to sort or to queue for review; "
            "a demonstration of fine-tuning a decoder LM for classification. Not for decisions about people, "
            "and not as the only safeguard against fraud.\n",
            "## Limitations\n",
            limitations,
            "## Training\n",
            training_section(cfg, metrics),
        ]
    )


def model_card(
    cfg: RunConfig,
    metrics: dict[str, Any],
    *,
    model_name: str | None = None,
    repo_id: str | None = None,
    merged: bool = False,
) -> str:
    """The card's text: YAML metadata for the Hub, then the Markdown body. ``repo_id`` goes into the usage snippet."""
    repo = repo_id or cfg.hub.repo_id
    name = model_name or (repo.split("/")[-1] if repo else "spam-tune-model")
    data = card_data(cfg, metrics, name, merged=merged)
    text = body(cfg, metrics, name, repo or USAGE_PLACEHOLDER, merged=merged)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}"))
