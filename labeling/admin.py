from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext, gettext_lazy

from labeling import services, validation
from labeling.errors import LabelingError
from labeling.imports import prompts_import
from labeling.models import Assignment, Candidate, Demonstration, Event, Project, Prompt, Ranking, Task


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "k", "overlap", "lease_seconds", "paused", "created_at"]
    list_filter = ["paused"]
    search_fields = ["name"]

    def get_urls(self):
        extra = [path("<int:pk>/import/", self.admin_site.admin_view(self.import_view), name="labeling_project_import")]
        return extra + super().get_urls()

    def import_view(self, request, pk: int):
        """Upload a JSONL or CSV prompt file into this project."""
        project = Project.objects.get(pk=pk)
        if request.method == "POST" and request.FILES.get("file"):
            upload = request.FILES["file"]
            fmt = "csv" if upload.name.lower().endswith(".csv") else "jsonl"
            try:
                text = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                messages.error(request, gettext("The file is not UTF-8 text."))
                return redirect(request.path)
            report = prompts_import(project=project, text=text, fmt=fmt, source=upload.name, actor=request.user)
            counts = {"created": report.created, "gold": report.gold_tasks, "duplicates": report.duplicates}
            if report.gold_tasks:
                message = gettext("Imported %(created)s prompts (%(gold)s gold); %(duplicates)s already present.")
            else:
                message = gettext("Imported %(created)s prompts; %(duplicates)s already present.")
            messages.info(request, message % counts)
            for line, problem in report.errors[:50]:
                messages.warning(request, gettext("line %(line)s: %(problem)s") % {"line": line, "problem": problem})
            return redirect("admin:labeling_project_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "project": project,
            "title": gettext("Import prompts into %(project)s") % {"project": project},
        }
        return render(request, "admin/labeling/project_import.html", context)


class PromptForm(forms.ModelForm):
    class Meta:
        model = Prompt
        fields = ["project", "messages", "source"]
        help_texts = {
            "messages": gettext_lazy(
                'A list like [{"role": "user", "content": "台灣第一高峰是那一座？"}], or plain text.'
            )
        }

    def clean_messages(self):
        try:
            return validation.messages_clean(self.cleaned_data["messages"])
        except LabelingError as error:
            raise forms.ValidationError(error.message) from None


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    form = PromptForm
    list_display = ["id", "__str__", "project", "source", "created_at"]
    list_filter = ["project"]
    search_fields = ["source"]

    def get_readonly_fields(self, request, obj=None):
        # Tasks and labels point at a prompt's text: once saved it does not change.
        return ["project", "messages", "source"] if obj else []

    def save_model(self, request, obj, form, change):
        # New prompts go through the service: deduplicated, with their demonstration task and event.
        prompt, _ = services.prompt_create(
            project=form.cleaned_data["project"],
            messages=form.cleaned_data["messages"],
            source=form.cleaned_data.get("source") or "admin",
            actor=request.user,
        )
        obj.pk, obj.content_hash, obj.created_at = prompt.pk, prompt.content_hash, prompt.created_at


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    fields = ["public_id", "source", "text"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "gold", "priority", "completions", "created_at"]
    list_editable = ["priority"]
    list_filter = ["project", "kind", "state", "gold"]
    inlines = [CandidateInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "state", "lease_expires_at"]
    list_filter = ["state"]


@admin.register(Demonstration)
class DemonstrationAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "created_at"]
    readonly_fields = ["client_id"]


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "none_acceptable", "created_at"]
    readonly_fields = ["client_id"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "verb", "actor", "project", "task", "created_at"]
    list_filter = ["verb"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the audit trail is append-only
