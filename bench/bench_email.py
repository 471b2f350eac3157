"""Email benchmark: a burst of finished evaluations notified through the Resend path.

A fake Resend API on 127.0.0.1 enforces 2 requests per second per API key, as
Resend does for a team. The script stores ``--emails`` finished evaluations
with a recipient in one transaction, then enqueues their notification tasks as
the completion path does. It measures the time until the service's notify
worker (a Celery threads worker, as ``llmeval run`` starts it) has recorded the
last email as sent. The ceiling is the provider's: 2 requests per second of 100 emails
each is 200 emails per second. Prints the rate, its ratio to that ceiling, the
requests and 429 responses, and whether each email arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_resend import BATCH_LIMIT, FakeResendApi, FakeResendServer
from service_stack import ServiceStack

# Runs inside `llmeval shell`: store the burst, then enqueue one task per email.
BURST_SCRIPT = """
import time
from django.db import transaction
from django.utils import timezone
from llmeval.evaluations.models import Evaluation, Status
from llmeval.notifications.models import Notification
from llmeval.notifications.services import enqueue_notification

with transaction.atomic():
    evaluations = Evaluation.objects.bulk_create(
        Evaluation(
            input_prompt=f"Benchmark question {{index}}: name a prime number.",
            model="bench",
            max_new_tokens=32,
            temperature=0.7,
            status=Status.COMPLETED,
            response=f"Answer {{index}}: 7 is a prime number.",
            completed_at=timezone.now(),
        )
        for index in range({count})
    )
    notifications = Notification.objects.bulk_create(
        Notification(evaluation=evaluation, recipient=f"user{{index}}@example.com")
        for index, evaluation in enumerate(evaluations)
    )
started = time.time()
for notification in notifications:
    enqueue_notification(notification.id)
print(started)
"""

RESULT_SCRIPT = """
import json
from django.db.models import Count, Max
from llmeval.notifications.models import Notification
by_status = dict(Notification.objects.values_list("status").annotate(Count("id")))
last = Notification.objects.aggregate(last=Max("sent_at"))["last"]
print(json.dumps({"by_status": by_status, "last_sent": last.timestamp() if last else None}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--emails", type=int, default=1000, help="finished evaluations in the burst (default 1000)"
    )
    parser.add_argument("--rate-limit", type=int, default=2, help="provider requests per second")
    parser.add_argument("--timeout", type=int, default=120, help="seconds before giving up")
    args = parser.parse_args()

    api = FakeResendApi(rate_limit=args.rate_limit)
    resend = FakeResendServer(api).start()
    workdir = Path(tempfile.mkdtemp(prefix="llmeval-bench-email-"))
    stack = ServiceStack(
        database="llmeval_bench_email",
        redis_db=5,
        workdir=workdir,
        extra_env={
            "EMAIL_PROVIDER": "resend",
            "RESEND_API_KEY": "re_bench_key",
            "RESEND_API_URL": f"{resend.url}/",
            "DEFAULT_FROM_EMAIL": "Evals <evals@example.com>",
            "EMAIL_RATE_LIMIT_PER_SECOND": str(args.rate_limit),
        },
    )
    try:
        stack.prepare()
        stack.delete_evaluations()
        stack.start_worker("notify", "notify,maintenance", "threads", 4)
        time.sleep(3)

        output = stack.manage("shell", "-c", BURST_SCRIPT.format(count=args.emails))
        started = float(output.split()[-1])
        deadline = time.monotonic() + args.timeout
        while True:
            stack.check_running()
            result = json.loads(stack.manage("shell", "-c", RESULT_SCRIPT).splitlines()[-1])
            unsent = args.emails - result["by_status"].get("sent", 0)
            if unsent == 0 or result["by_status"].get("failed"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{unsent} emails were not sent within {args.timeout} s")
            time.sleep(0.5)
    finally:
        stack.stop()
        resend.stop()

    stats = api.stats()
    elapsed = result["last_sent"] - started
    rate = args.emails / elapsed
    ceiling = args.rate_limit * BATCH_LIMIT
    exactly_once = stats["emails_delivered"] == stats[
        "distinct_evaluations"
    ] == args.emails and result["by_status"] == {"sent": args.emails}
    print(
        f"email benchmark: {args.emails} finished evaluations at once, fake Resend at "
        f"{args.rate_limit} requests/s, ceiling {ceiling} emails/s"
    )
    print(f"all sent {elapsed:.2f} s after the first task was enqueued")
    print(f"throughput: {rate:.1f} emails/s")
    print(f"ratio to the provider's ceiling: {rate / ceiling:.3f}")
    print(
        f"provider: {stats['requests']} requests ({stats['batch_requests']} batch), "
        f"{stats['rejected_429']} answered 429, {stats['replayed']} idempotent replays, "
        f"at most {stats['max_requests_in_one_second']} requests within one second"
    )
    print(
        f"delivered {stats['emails_delivered']} emails for {stats['distinct_evaluations']} "
        f"evaluations; rows by status {result['by_status']}; "
        f"exactly once: {'yes' if exactly_once else 'NO'}"
    )


if __name__ == "__main__":
    main()
