from django.urls import path

from labeling.api import views
from labeling.quality import api as quality
from labeling.quality.api import HoldReleaseView, ProjectAgreementView, ProjectGoldView, TaskGoldView

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:pk>/stats/", views.ProjectStatsView.as_view(), name="api-project-stats"),
    path("projects/<int:pk>/agreement/", ProjectAgreementView.as_view(), name="api-project-agreement"),
    path("projects/<int:pk>/pause/", views.ProjectPauseView.as_view(), name="api-project-pause"),
    path("projects/<int:pk>/gold/", ProjectGoldView.as_view(), name="api-project-gold"),
    path("projects/<int:pk>/holds/<int:hold_id>/release/", HoldReleaseView.as_view(), name="api-hold-release"),
    path("tasks/<int:task_id>/gold/", TaskGoldView.as_view(), name="api-task-gold"),
    path("projects/<int:pk>/adjudications/", quality.AdjudicationQueueView.as_view(), name="api-adjudications"),
    path("tasks/<int:task_id>/adjudication/", quality.AdjudicationSubmitView.as_view(), name="api-adjudication"),
    path("reviews/next/", quality.ReviewNextView.as_view(), name="api-review-next"),
    path("demonstrations/<int:pk>/reviews/", quality.ReviewSubmitView.as_view(), name="api-reviews"),
    path("tasks/next/", views.NextTaskView.as_view(), name="api-task-next"),
    path("tasks/<int:task_id>/demonstration/", views.DemonstrationSubmitView.as_view(), name="api-demonstration"),
    path("tasks/<int:task_id>/ranking/", views.RankingSubmitView.as_view(), name="api-ranking"),
    path("tasks/<int:task_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("tasks/<int:task_id>/unskip/", views.UnskipView.as_view(), name="api-unskip"),
    path("tasks/<int:task_id>/heartbeat/", views.HeartbeatView.as_view(), name="api-heartbeat"),
    path("tasks/<int:task_id>/draft/", views.DraftView.as_view(), name="api-draft"),
    path("me/progress/", views.ProgressView.as_view(), name="api-progress"),
    path("demonstrations/<int:pk>/", views.DemonstrationEditView.as_view(), name="api-demonstration-edit"),
    path("rankings/<int:pk>/", views.RankingEditView.as_view(), name="api-ranking-edit"),
    path("markdown/", views.MarkdownPreviewView.as_view(), name="api-markdown"),
]
