// The one class of @kubernetes/client-node that socklb uses, re-exported from a module of its own
// so that the bundler (scripts/bundle.mjs) keeps only what it needs: a dynamic import of the package
// itself gives the bundler no way to tell which exports are used, and the whole client (3.5 MB
// minified, against 1 MB) ends up in dist/socklb.js.
export { KubeConfig } from '@kubernetes/client-node';
