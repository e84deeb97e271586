CREATE TABLE IF NOT EXISTS webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  webhook TEXT NOT NULL,
  action TEXT NOT NULL,
  payload TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL,
  status_code INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  response TEXT,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
  ON webhook_deliveries(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook ON webhook_deliveries(webhook, seq);
