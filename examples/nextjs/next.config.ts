import type { NextConfig } from "next";

const config: NextConfig = {
  reactStrictMode: true,
  // `endcall` is installed from ../../web as a copy (.npmrc: install-links), like a registry package
  poweredByHeader: false,
  eslint: { ignoreDuringBuilds: true },
};

export default config;
