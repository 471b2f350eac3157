from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from llmeval.api import views

# Every API path matches with and without a trailing slash, without a redirect.
urlpatterns = [
    path("admin/", admin.site.urls),
    re_path(r"^api/evaluate/?$", views.EvaluationListCreateView.as_view(), name="evaluation-list"),
    re_path(
        r"^api/evaluate/(?P<evaluation_id>[^/]+)/?$",
        views.EvaluationDetailView.as_view(),
        name="evaluation-detail",
    ),
    re_path(r"^api/models/?$", views.ModelListView.as_view(), name="model-list"),
    re_path(r"^api/metrics/?$", views.MetricListView.as_view(), name="metric-list"),
    re_path(r"^api/health/?$", views.HealthView.as_view(), name="health"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

if settings.BENCH_BARE_VIEW:
    from llmeval.api.bench_views import bare_submit

    urlpatterns.append(re_path(r"^bench/bare-submit/?$", bare_submit))

handler400 = "llmeval.api.errors.bad_request"
handler404 = "llmeval.api.errors.not_found"
handler500 = "llmeval.api.errors.server_error"
