"""DeepScope's web service: REST API, WebSocket streams, the playground page and the executors."""
