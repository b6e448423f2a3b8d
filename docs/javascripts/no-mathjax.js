/* Stands in for MathJax on the tutorial pages: mkdocs-jupyter would load it from a CDN, and this site
   loads nothing from the network, so the tutorials' few formulas show as their TeX source. */
