"""A webhook receiver in ten lines (docs/integrations.md, "Webhooks"): checks each delivery's
Standard Webhooks signature with the `standardwebhooks` package (pip install standardwebhooks) and
prints the event. WEBHOOK_SECRET=whsec_... python scripts/webhook_receiver.py [PORT] (default 8081).
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook

hook = Webhook(os.environ["WEBHOOK_SECRET"])  # the secret of the webhook in hooks.yaml


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:  # the signature, and a timestamp within 5 minutes (a replay is refused)
            event = hook.verify(body, dict(self.headers))
        except Exception:
            self.send_response(400)
        else:  # webhook-id is the same on every retry: de-duplicate on it
            print(self.headers["webhook-id"], event["type"], event["data"].get("id", ""), flush=True)
            self.send_response(204)
        self.end_headers()


HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8081), Receiver).serve_forever()
