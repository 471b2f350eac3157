"""A bare Django view for the submit benchmark: the same insert and enqueue, nothing else.

It is routed only when LLMEVAL_BENCH_BARE_VIEW is on, so the benchmark can
compare the API's POST /api/evaluate with the least work that stores and
queues an evaluation, on the same server in the same run.
"""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from llmeval.evaluations.models import Evaluation
from llmeval.evaluations.services import enqueue_generation
from llmeval.providers.registry import registry


@csrf_exempt
@require_POST
def bare_submit(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    spec = registry().get(body.get("model") or registry().default)
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            input_prompt=body["input_prompt"],
            model=spec.name,
            max_new_tokens=body.get("max_new_tokens", 256),
            temperature=body.get("temperature", 0.7),
        )
        transaction.on_commit(lambda: enqueue_generation(evaluation.id, spec.queue, spec.name))
    return JsonResponse({"id": str(evaluation.id), "status": "pending"}, status=202)
