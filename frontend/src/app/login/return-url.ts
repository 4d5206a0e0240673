/**
 * Where the login page goes once logged in: a path of this app (`/videos/3?x=1`), never another
 * site. Refused, hence `/`: absolute URLs (`https://…`), protocol-relative ones (`//evil.example`,
 * `/\evil.example`), anything not starting with `/`, control characters, and the login page
 * itself.
 */
export function safeReturnUrl(value: string | null | undefined): string {
  if (typeof value !== 'string' || !value.startsWith('/')) {
    return '/';
  }
  // eslint-disable-next-line no-control-regex
  if (/^\/[/\\]/.test(value) || value.includes('\\') || /[\u0000-\u001f\u007f]/.test(value)) {
    return '/';
  }
  if (value === '/login' || value.startsWith('/login?') || value.startsWith('/login/')) {
    return '/';
  }
  return value;
}
