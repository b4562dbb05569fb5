"""Speed of otel-reqid-logging against bare aiohttp and the alternatives: ``python -m bench``.

``apps`` serves the hello app under each configuration, ``load`` drives wrk,
``records`` times the log record factories and ``report`` writes the tables.
"""

__all__: list[str] = []
