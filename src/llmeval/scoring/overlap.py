"""Reference-overlap metrics: ROUGE-L from rouge-score, BLEU and chrF from sacrebleu."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from llmeval.scoring.base import Parameter, Scorer, ScoringCase

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

# rouge-score and sacrebleu are imported where they are used, so that the API
# process, which only parses metric specs, does not pay for them (about 0.25 s
# together, measured with python -X importtime on this project's 2-core machine).

# sacrebleu tokenizers that need no extra package and no download: the others
# need MeCab, SentencePiece or a model file fetched at run time.
BLEU_TOKENIZERS = ("13a", "intl", "zh", "char", "none")


class RougeL(Scorer):
    name = "rouge_l"
    description = (
        "ROUGE-L F-measure between the response and the expected output, from the "
        "longest common subsequence of tokens (rouge-score). rouge-score's tokenizer "
        "lower-cases the text and keeps only the ASCII letters and digits."
    )
    requires_expected_output = True
    parameters = (
        Parameter(
            "use_stemmer",
            "boolean",
            "Apply the Porter stemmer to tokens longer than 3 characters.",
            default=True,
        ),
    )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        # NOTE: rouge-score 0.1.2 turns every character outside a-z and 0-9 into
        # a separator, so text in a non-Latin script has no tokens and scores 0.
        use_stemmer = self.params["use_stemmer"]
        result = _rouge_scorer(use_stemmer).score(case.expected_output or "", case.response)
        rouge = result["rougeL"]
        details = {
            "precision": rouge.precision,
            "recall": rouge.recall,
            "fmeasure": rouge.fmeasure,
            "library": f"rouge-score {version('rouge-score')}",
            "use_stemmer": use_stemmer,
        }
        return float(rouge.fmeasure), details


@cache
def _rouge_scorer(use_stemmer: bool) -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=use_stemmer)


class Bleu(Scorer):
    name = "bleu"
    description = (
        "Sentence BLEU of the response against the expected output, divided by 100 "
        "(sacrebleu.sentence_bleu: exponential smoothing, effective order). BLEU is "
        "designed for a corpus, so one sentence gives a noisy figure."
    )
    requires_expected_output = True
    parameters = (
        Parameter("lowercase", "boolean", "Lower-case both texts first.", default=False),
        Parameter(
            "tokenize",
            "choice",
            "The sacrebleu tokenizer: 13a is the WMT standard, intl also splits on Unicode "
            "punctuation and symbols, zh segments Chinese, char splits every character.",
            default="13a",
            choices=BLEU_TOKENIZERS,
        ),
    )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        from sacrebleu.metrics.bleu import BLEU

        # The same settings as sacrebleu.sentence_bleu's defaults, built by hand
        # so that the metric object can report its signature.
        metric = BLEU(
            lowercase=self.params["lowercase"],
            tokenize=self.params["tokenize"],
            smooth_method="exp",
            effective_order=True,
        )
        result = metric.sentence_score(case.response, [case.expected_output or ""])
        details = {
            "score": result.score,
            "precisions": list(result.precisions),
            "brevity_penalty": result.bp,
            "response_length": result.sys_len,
            "reference_length": result.ref_len,
            "signature": str(metric.get_signature()),
        }
        return _percent_to_unit(result.score), details


class Chrf(Scorer):
    name = "chrf"
    description = (
        "Sentence chrF of the response against the expected output, divided by 100 "
        "(sacrebleu.sentence_chrf: character 6-grams, beta 2, white space ignored)."
    )
    requires_expected_output = True
    parameters = (
        Parameter(
            "word_order",
            "integer",
            "Word n-gram order: 0 for chrF, 2 for chrF++.",
            default=0,
        ),
    )

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        if not 0 <= params["word_order"] <= 2:
            raise ValueError(
                f"parameter 'word_order' must be 0, 1 or 2, got {params['word_order']}"
            )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        from sacrebleu.metrics.chrf import CHRF

        metric = CHRF(
            char_order=CHRF.CHAR_ORDER,
            word_order=self.params["word_order"],
            beta=CHRF.BETA,
            whitespace=False,
            eps_smoothing=False,
        )
        result = metric.sentence_score(case.response, [case.expected_output or ""])
        details = {
            "score": result.score,
            "char_order": metric.char_order,
            "word_order": metric.word_order,
            "beta": metric.beta,
            "signature": str(metric.get_signature()),
        }
        return _percent_to_unit(result.score), details


def _percent_to_unit(score: float) -> float:
    # sacrebleu 2.6.0 returns 100.00000000000004 for identical texts because
    # it goes through exp(log(...)), so cap the rounding error at 1.
    return min(score / 100.0, 1.0)
