"""End-to-end tests: the dashboard driven in headless Chromium (Debian's, via Playwright)."""
