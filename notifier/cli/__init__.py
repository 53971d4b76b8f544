"""Terminal clients, kept out of the web path: ``listener`` is what ``manage.py listen`` runs."""
