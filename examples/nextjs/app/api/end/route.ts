// The browser's REST fallback and tab-close beacon (`fallbackUrl: "/api/end"`), forwarded to
// `endcall serve` at ENDCALL_URL. Add `getClientAddress` when a proxy in front of this app
// guarantees the client's address (web/README.md, "endProxy").
import { endProxy } from "endcall/server";
export const POST = endProxy({ target: process.env.ENDCALL_URL });
