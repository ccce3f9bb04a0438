"""AI stages with the customer's own keys (issue 7): qualification, drafting and audit over the
official provider SDKs, review or autonomous sending, opt-in enrichment.

    providers.py   adapters (openai, anthropic, google-genai, OpenAI-compatible by base URL),
                   retries honouring Retry-After, per-key concurrency, ProviderRegistry
    stages.py      versioned prompt templates, pydantic answers, the audit rules (pure)
    templates.py   a brand's own template versions (encrypted)
    runs.py        run_stage(): one stage_runs row per provider call, prices, monthly budget
    service.py     AIService: the composition (pool, vault key, registry, send queue)
    review.py      campaign AI settings, drafts, approve / edit / reject, queue_for_sending
    enrichment.py  Apollo and local-directory CSV, off unless a workspace opts in
    web.py         `routes` under /api/ai/... and `install(app, service)`
    inventory.py   the data inventory of migrations/0200_ai.sql
    errors.py      AIError and its subclasses (HTTP statuses)

Integration (the composition root): build one `AIService(connect, vault.key, ProviderRegistry(),
queue)` per process, `web.install(app, service)`, mount `web.routes`, and call
`service.registry.clear()` when the vault seals (the SDK clients hold the plaintext keys).
"""

# The core inventory loads ai/inventory.py through its EXTENSION_MODULES; importing the core
# first means ai.inventory is always loaded from there, whichever module is imported first.
import paitho_tenant.inventory  # noqa: F401
