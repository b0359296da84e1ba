/**
 * The interview page, a Server Component: the static frame is rendered on the server (with
 * endcall's core: which reasons the page can send), the call itself is the client component
 * `InterviewApp` (`@livekit/components-react`'s session API and `endcall/react`).
 */
import { CLIENT_REASON_PREFIX, isValidReason } from "endcall";
import type { ReactElement } from "react";
import { InterviewApp } from "./interview";

/** What the tab-close beacon reports (a customer reason: protocol §3). */
const TAB_CLOSED_REASON = `${CLIENT_REASON_PREFIX}tab-closed`;

export default function Page(): ReactElement {
  if (!isValidReason(TAB_CLOSED_REASON)) throw new Error(`${TAB_CLOSED_REASON} is not a valid end reason`);
  return (
    <>
      <header className="top">
        <h1>Mock interview</h1>
        <span className="brand">endcall · Next.js</span>
      </header>
      <InterviewApp beaconReason={TAB_CLOSED_REASON} />
    </>
  );
}
