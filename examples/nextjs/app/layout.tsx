/**
 * The root layout: a Server Component that imports endcall's core (its protocol constants),
 * which touches no browser API when imported, so it also runs on the server.
 */
import { DEFAULT_METHOD, VERSION } from "endcall";
import type { Metadata } from "next";
import type { ReactElement, ReactNode } from "react";
import "./globals.css";

export const metadata: Metadata = {
  title: "Mock interview · endcall on Next.js",
  description: "A LiveKit voice interview, ended with endcall's useEndInterview",
};

export default function RootLayout({ children }: { children: ReactNode }): ReactElement {
  return (
    <html lang="en">
      <body>
        <main className="page">{children}</main>
        <footer className="muted" data-testid="protocol">
          endcall protocol v{VERSION} · RPC {DEFAULT_METHOD}
        </footer>
      </body>
    </html>
  );
}
