"""Revenue: takes the published claims and reviews; gives each side's MS-DRG (grouped with the version of
the discharge date), its CMS Table 5 weight and payment, the dollar impact and its universe estimate."""
