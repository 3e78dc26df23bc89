# The Yushan image: the web app and the Celery workers run from it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Requirements first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The translation catalogues, compiled (pure Python; the slim image has no GNU gettext).
RUN python manage.py compile_translations
# Run as a user of our own; it owns what the app writes: collected static files under var/, the
# model and snapshot stores (a named volume mounted on a directory starts with its owner).
RUN useradd --create-home --uid 1000 yushan \
    && mkdir -p /app/var /data/models /data/snapshots \
    && chown -R yushan:yushan /app/var /data
USER yushan

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput && exec gunicorn feedback_site.wsgi:application -c gunicorn.conf.py"]
